package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// Process is one server a stack started, known by its PID: stopping,
// killing or signalling it never looks a process up by name.
type Process struct {
	Name    string
	LogPath string
	// logStart is where this process's lines begin in LogPath, which
	// earlier runs may have written to.
	logStart int64
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
}

// ProcessOptions say how to start a Process.
type ProcessOptions struct {
	// Name names it in errors; the binary's base name if empty.
	Name string
	Bin  string
	Args []string
	// Env comes after this process's environment; a later setting wins.
	Env []string
	// Dir is its working directory; this process's if empty.
	Dir string
	// LogPath receives its standard output and error (appended).
	LogPath string
	// Credential, if set, runs it as another user (PostgreSQL refuses
	// to run as root).
	Credential *syscall.Credential
}

// StartProcess starts a server in its own process group (see SysProcAttr).
func StartProcess(o ProcessOptions) (*Process, error) {
	logf, err := os.OpenFile(o.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	cmd := exec.Command(o.Bin, o.Args...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Dir = o.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = SysProcAttr()
	cmd.SysProcAttr.Credential = o.Credential
	if o.Name == "" {
		o.Name = filepath.Base(o.Bin)
	}
	var logStart int64
	if info, err := logf.Stat(); err == nil {
		logStart = info.Size()
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("devstack: start %s: %w", o.Name, err)
	}
	p := &Process{Name: o.Name, cmd: cmd, LogPath: o.LogPath, logStart: logStart, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func startProcess(bin string, args, env []string, logPath string) (*Process, error) {
	return StartProcess(ProcessOptions{Bin: bin, Args: args, Env: env, LogPath: logPath})
}

// SysProcAttr puts a process we start (a server, a test's worker) in its
// own process group (so a Ctrl-C in a terminal reaches us, and we stop it
// in order) and, on Linux, asks the kernel to kill it if we die without
// stopping it (a `go test -timeout` panic).
func SysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if runtime.GOOS == "linux" {
		setPdeathsig(a)
	}
	return a
}

// PID is the process's ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited says how the process ended, or nil while it runs.
func (p *Process) Exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return errors.New("exited")
		}
		return p.err
	default:
		return nil
	}
}

// Kill sends SIGKILL, as a crash or an OOM kill would, and waits until
// the process is gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM by PID, and SIGKILL if the process has not exited
// within grace. It is safe to call on a process that has exited.
func (p *Process) Stop(grace time.Duration) error {
	return p.StopWith(syscall.SIGTERM, grace)
}

// StopWith is Stop with another first signal, for servers whose SIGTERM
// waits for their clients (PostgreSQL's fast shutdown is SIGINT).
func (p *Process) StopWith(sig syscall.Signal, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("devstack: kill %s (pid %d): %w", p.Name, p.PID(), err)
	}
	<-p.done
	return nil
}

// WaitFor polls check until it succeeds, the process exits, or the
// timeout; its errors name the process and end with its log's tail.
func (p *Process) WaitFor(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	return waitFor(ctx, p, p.Name, timeout, check)
}

// waitFor polls check until it succeeds, the process exits, or the timeout.
func waitFor(ctx context.Context, p *Process, name string, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			lines := p.ownLog()
			why := errorLines(lines, 5)
			if strings.Contains(lines, "address already in use") {
				return fmt.Errorf("devstack: %s exited before it answered (%v): %w: %s; its log:\n%s", name, p.err, ErrPortTaken, why, Tail(p.LogPath, 20))
			}
			return fmt.Errorf("devstack: %s exited before it answered (%v): %s; its log:\n%s", name, p.err, why, Tail(p.LogPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("devstack: %s did not answer within %s: %v; its log:\n%s", name, timeout, last, Tail(p.LogPath, 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CheckTemporal dials the frontend at addr and describes the namespace:
// nil once Temporal answers for it.
func CheckTemporal(ctx context.Context, addr, namespace string) error {
	c, err := client.DialContext(ctx, client.Options{HostPort: addr, Namespace: namespace, Logger: QuietLogger{}})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	return err
}

// ownLog is what this process wrote to its log.
func (p *Process) ownLog() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil || int64(len(b)) < p.logStart {
		return ""
	}
	return string(b[p.logStart:])
}

// errorLines are the first n lines of log that say why a server failed
// (error-level lines, a panic's first line), which a tail of its stack
// would not show.
func errorLines(log string, n int) string {
	var why []string
	for l := range strings.Lines(log) {
		if len(why) < n && (strings.Contains(l, "level=ERROR") || strings.Contains(l, `"level":"error"`) || strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "FATAL")) {
			why = append(why, strings.TrimSpace(l))
		}
	}
	if len(why) == 0 {
		return "no error line in its log"
	}
	return strings.Join(why, " | ")
}

// Tail is the last n lines of a log file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// QuietLogger is an SDK logger that drops everything: it keeps a
// client's connection retries out of a stack's output.
type QuietLogger struct{}

// Debug drops the line.
func (QuietLogger) Debug(string, ...any) {}

// Info drops the line.
func (QuietLogger) Info(string, ...any) {}

// Warn drops the line.
func (QuietLogger) Warn(string, ...any) {}

// Error drops the line.
func (QuietLogger) Error(string, ...any) {}
