package trainer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// tailWriter passes writes on and keeps the last tailBytes of them, for
// the error of a trainer that failed.
type tailWriter struct {
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 2048

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBytes {
		t.buf = t.buf[len(t.buf)-tailBytes:]
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// start runs the trainer in its own process group, which the kernel kills
// with the runner (Pdeathsig), and streams its progress lines.
func (s *session) start(spec Spec) (*exec.Cmd, <-chan Progress, <-chan error, error) {
	specPath := filepath.Join(s.Config.WorkDir, specFileName)
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, nil, nil, err
	}
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		return nil, nil, nil, err
	}
	if len(s.Config.Command) == 0 {
		return nil, nil, nil, errors.New("trainer: no trainer command is configured")
	}
	env := spec.Env(specPath)
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	argv := make([]string, len(s.Config.Command))
	for i, a := range s.Config.Command {
		argv[i] = os.Expand(a, func(k string) string {
			if v, ok := vars[k]; ok {
				return v
			}
			return "${" + k + "}"
		})
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), env...), s.Config.Env...)
	cmd.Dir = s.Config.WorkDir
	cmd.SysProcAttr = sysProcAttr()
	logw := s.Log
	if logw == nil {
		logw = io.Discard
	}
	s.tail = &tailWriter{w: logw}
	logw = s.tail
	cmd.Stderr = logw
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("trainer: starting %s: %w", argv[0], err)
	}
	lines := make(chan Progress, 64)
	exited := make(chan error, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var p struct {
				Step  *int    `json:"step"`
				Epoch float64 `json:"epoch"`
				Loss  float64 `json:"loss"`
			}
			line := sc.Bytes()
			if json.Unmarshal(line, &p) != nil || p.Step == nil {
				fmt.Fprintf(logw, "%s\n", line)
				continue
			}
			select {
			case lines <- Progress{Step: *p.Step, Epoch: p.Epoch, Loss: p.Loss}:
			default:
				// A reader behind by 64 lines loses progress lines, not
				// training time: the next line says more.
			}
		}
	}()
	go func() {
		<-read
		exited <- cmd.Wait()
	}()
	return cmd, lines, exited, nil
}

// signal sends sig to the trainer's process group, so that a trainer
// started through a shell or a launcher hears it too.
func (s *session) signal(sig syscall.Signal) {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, sig)
	}
}

func (s *session) killGroup() { s.signal(syscall.SIGKILL) }
