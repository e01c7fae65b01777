package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// Worker is `autoglm worker` as a process of its own, so that a test can
// stop it with SIGTERM, kill it with SIGKILL or freeze it with SIGSTOP,
// always by its PID.
type Worker struct {
	Node string
	Log  string // its standard output and error
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // what Wait said, valid after done
	exit time.Time     // when Wait returned, valid after done
}

// WorkerOptions configure one worker process.
type WorkerOptions struct {
	// Node is AUTOGLM_NODE. A worker that replaces a dead one reuses its
	// name: dispatch already sent the task to that node's queue.
	Node string
	// Env comes after this process's environment and AUTOGLM_NODE; a
	// later setting wins.
	Env []string
	// Grace is how long the test's cleanup waits after SIGTERM before it
	// sends SIGKILL; 30 s if zero.
	Grace time.Duration
	// Announce is how long the worker may take to announce itself; 90 s
	// if zero. A busy shared machine makes a cold start slow.
	Announce time.Duration
	// Binary is the autoglm executable to run; empty is the suite's CLI
	// (another build, for a rolling upgrade).
	Binary string
	// ControlOnly runs the control plane alone (AUTOGLM_WORKER_ROLE=
	// control): no node, so nothing to wait for.
	ControlOnly bool
}

// workers are the worker processes running, so that an interrupted or
// ended run stops them too; once closed, no more start.
type workers struct {
	sync.Mutex
	m      map[*Worker]struct{}
	closed bool
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// LogPath is a log file in the suite's folder, named after the test and
// what, kept with the server logs when the run fails.
func (e *Env) LogPath(t testing.TB, what string) string {
	dir := filepath.Join(e.Dir, "logs")
	_ = os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-")+"-"+what+".log")
}

// StartWorker starts `autoglm worker` and waits until it has announced its
// node, so that dispatch can pick it. The test's cleanup stops it if it
// still runs and removes its node record: dispatch would count a stopped
// node alive for a while and could send a later test's task to it.
func (e *Env) StartWorker(t testing.TB, o WorkerOptions) *Worker {
	t.Helper()
	if o.Grace == 0 {
		o.Grace = 30 * time.Second
	}
	if o.Announce == 0 {
		o.Announce = 90 * time.Second
	}
	w := &Worker{Node: o.Node, done: make(chan struct{})}
	w.Log = e.LogPath(t, fmt.Sprintf("worker-%s-%s", o.Node, RandHex(2)))
	f, err := os.Create(w.Log)
	if err != nil {
		t.Fatal(err)
	}
	bin := e.CLI
	if o.Binary != "" {
		bin = o.Binary
	}
	w.cmd = exec.Command(bin, "worker")
	w.cmd.Env = append(append(os.Environ(), "AUTOGLM_NODE="+o.Node), o.Env...)
	if o.ControlOnly {
		w.cmd.Env = append(w.cmd.Env, "AUTOGLM_WORKER_ROLE=control")
	}
	w.cmd.Stdout, w.cmd.Stderr = f, f
	w.cmd.SysProcAttr = devstack.SysProcAttr()
	since := time.Now()
	if err := e.track(w); err != nil {
		f.Close()
		t.Fatalf("starting autoglm worker: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		w.exit = time.Now()
		f.Close()
		e.workers.Lock()
		delete(e.workers.m, w)
		e.workers.Unlock()
		close(w.done)
	}()
	t.Logf("worker process %d started as node %s", w.PID(), o.Node)
	t.Cleanup(func() {
		w.Stop(o.Grace)
		if t.Failed() {
			t.Logf("log of worker process %d (node %s):\n%s", w.PID(), w.Node, devstack.Tail(w.Log, 80))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Store.Delete(ctx, storage.NodeRecordPrefix+o.Node+".json")
	})
	if !o.ControlOnly {
		e.WaitAnnounced(t, o.Node, since, o.Announce, w.exited, w.Log)
	}
	return w
}

// track starts w's process and records it, unless the run is ending.
func (e *Env) track(w *Worker) error {
	e.workers.Lock()
	defer e.workers.Unlock()
	if e.workers.closed {
		return errors.New("the test run is ending")
	}
	if err := w.cmd.Start(); err != nil {
		return err
	}
	if e.workers.m == nil {
		e.workers.m = map[*Worker]struct{}{}
	}
	e.workers.m[w] = struct{}{}
	return nil
}

// stopWorkers stops every worker process still running, for a run that
// ends or is interrupted with tests still going.
func (e *Env) stopWorkers() {
	e.workers.Lock()
	e.workers.closed = true
	var ws []*Worker
	for w := range e.workers.m {
		ws = append(ws, w)
	}
	e.workers.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Stop(10 * time.Second)
		}()
	}
	wg.Wait()
}

// WaitAnnounced waits until the node has written its record since since:
// the worker is connected to Temporal and the bucket. exited reports a
// worker that gave up before that.
func (e *Env) WaitAnnounced(t testing.TB, node string, since time.Time, limit time.Duration, exited func() error, log string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		n, err := e.NodeRecord(ctx, node)
		if err == nil && !n.LastSeen.Before(since) {
			return
		}
		if err := exited(); err != nil {
			t.Fatalf("worker %s exited before it announced itself: %v\n%s", node, err, devstack.Tail(log, 40))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("worker %s did not announce itself within %s\n%s", node, limit, devstack.Tail(log, 40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NodeRecord is the record a node keeps in the suite's bucket.
func (e *Env) NodeRecord(ctx context.Context, node string) (activities.Node, error) {
	return nodeRecord(ctx, e.Store, node)
}

func nodeRecord(ctx context.Context, store storage.Store, node string) (activities.Node, error) {
	var n activities.Node
	rc, _, err := store.Get(ctx, storage.NodeRecordPrefix+node+".json")
	if err != nil {
		return n, err
	}
	defer rc.Close()
	return n, json.NewDecoder(rc).Decode(&n)
}

// PID is the process's ID.
func (w *Worker) PID() int { return w.cmd.Process.Pid }

// Done is closed once the process has exited.
func (w *Worker) Done() <-chan struct{} { return w.done }

func (w *Worker) exited() error {
	select {
	case <-w.done:
		return fmt.Errorf("exited: %v", w.err)
	default:
		return nil
	}
}

// Signal sends sig to the process, failing the test if it cannot.
func (w *Worker) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %s to worker %d: %v", sig, w.PID(), err)
	}
}

// Kill sends SIGKILL, as a crash or an OOM kill would, and waits for the
// process to be gone.
func (w *Worker) Kill() {
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
}

// Term sends SIGTERM, as a rolling deploy would, and waits up to grace for
// the process to exit by itself; it returns when it exited, and an error
// if it did not or not cleanly.
func (w *Worker) Term(grace time.Duration) (time.Time, error) {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(grace):
		return time.Time{}, fmt.Errorf("worker process %d did not exit within %s of SIGTERM", w.PID(), grace)
	}
	if w.err != nil {
		return w.exit, fmt.Errorf("worker process %d exited with %v after SIGTERM; want a clean exit", w.PID(), w.err)
	}
	return w.exit, nil
}

// Stop sends SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM
// and, after grace, SIGKILL, all by PID.
func (w *Worker) Stop(grace time.Duration) {
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGCONT)
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(grace):
		w.Kill()
	}
}

// CLIOptions are how one run of the CLI differs from this process.
type CLIOptions struct {
	// Env is the CLI's whole environment; nil is this process's.
	Env   []string
	Stdin string
}

// CLIRun is what one run of the CLI said.
type CLIRun struct {
	Stdout, Stderr string
	// Output is standard output and error as they came, interleaved.
	Output string
	Code   int // the exit code
}

// RunCLI runs the CLI that Main built with args and returns what it said
// and its exit code; a CLI that cannot be run at all fails the test.
func (e *Env) RunCLI(t testing.TB, ctx context.Context, o CLIOptions, args ...string) CLIRun {
	t.Helper()
	cmd := exec.CommandContext(ctx, e.CLI, args...)
	cmd.Env = o.Env
	cmd.Stdin = strings.NewReader(o.Stdin)
	var out, errb bytes.Buffer
	both := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = multi{&out, both}, multi{&errb, both}
	err := cmd.Run()
	r := CLIRun{Stdout: out.String(), Stderr: errb.String(), Output: both.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
		t.Logf("autoglm %s: exit %d: %s", strings.Join(args, " "), r.Code, strings.TrimSpace(r.Stderr))
	default:
		t.Fatalf("autoglm %s: %v\n%s", strings.Join(args, " "), err, r.Output)
	}
	return r
}

// multi writes to both. exec copies standard output and error on
// goroutines of their own, so the writer they share is a lockedBuffer.
type multi [2]interface{ Write([]byte) (int, error) }

func (m multi) Write(p []byte) (int, error) {
	m[0].Write(p)
	return m[1].Write(p)
}

type lockedBuffer struct {
	sync.Mutex
	b bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.Lock()
	defer l.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.Lock()
	defer l.Unlock()
	return l.b.String()
}
