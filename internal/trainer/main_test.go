package trainer_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// The suite runs on a real MinIO; the node agents it kills are processes
// of the testagent command running the real runner, and the trainers are
// the test trainer (a stand-in, named so) and the PyTorch script.
var (
	stack   *devstack.Stack
	store   storage.Store
	bins    string // testagent and testtrainer, built for the suite
	root    string // the module's root
	scratch string
)

const bucket = "trainer"

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("trainer: the fault tests need MinIO; skipped in -short mode")
		return m.Run()
	}
	bin, err := devstack.BinDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	root = filepath.Dir(bin)
	dir, err := os.MkdirTemp("", "autoglm-trainer-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	scratch = dir
	code := 1
	defer func() {
		if code == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, "trainer: logs and node folders are kept in", dir)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bins = filepath.Join(dir, "bin")
	for _, p := range []string{"testagent", "testtrainer"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bins, p), "./internal/trainer/"+p)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", p, err, out)
			return 1
		}
	}
	s, err := devstack.Start(ctx, devstack.Options{Dir: filepath.Join(dir, "stack"), BinDir: bin, Buckets: []string{bucket}, NoTemporal: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Stop()
	stack = s
	for _, kv := range s.Env(bucket) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if store, err = storage.Open(ctx, cfg.S3); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code = m.Run()
	return code
}

var runs atomic.Int64

// unique names a job for one run of a test: the bucket outlives -count
// repetitions, and a job that already ended would only return its result.
func unique(name string) string {
	return fmt.Sprintf("%s-%d", name, runs.Add(1))
}

// needStack skips a test that needs MinIO in -short mode.
func needStack(t *testing.T) {
	t.Helper()
	if stack == nil {
		t.Skip("needs MinIO; skipped in -short mode")
	}
}

// trainingFile writes a chat fine-tuning file of n examples.
func trainingFile(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		line, _ := json.Marshal(map[string]any{"messages": []map[string]string{
			{"role": "system", "content": "You answer sums in words."},
			{"role": "user", "content": fmt.Sprintf("What is %d plus %d?", i, i+1)},
			{"role": "assistant", "content": fmt.Sprintf("%d plus %d is %d.", i, i+1, 2*i+1)},
		}})
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(scratch, fmt.Sprintf("train-%d.jsonl", n))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// line is one line a testagent prints.
type line struct {
	Progress *trainer.Progress `json:"progress"`
	Action   string            `json:"action"`
	Step     int               `json:"step"`
	Seq      int               `json:"seq"`
	Log      string            `json:"log"`
	Result   *trainer.Result   `json:"result"`
	Error    string            `json:"error"`
	Type     string            `json:"type"`
	// From the test trainer's log: a save begins.
	Saving  int `json:"-"`
	Folders int `json:"-"`
}

// agent is one testagent process: one attempt on one node.
type agent struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	lines chan line
	done  chan struct{}
	err   error // after done
	mu    sync.Mutex
	seen  []line
	// last is the highest progress step seen.
	last int
}

type agentOptions struct {
	task, attempt string
	flags         []string
	env           []string
	command       []string // default: the test trainer
}

// startAgent starts an attempt on a node folder of its own.
func startAgent(t *testing.T, o agentOptions) *agent {
	t.Helper()
	if o.command == nil {
		o.command = []string{filepath.Join(bins, "testtrainer")}
	}
	work := filepath.Join(scratch, "nodes", o.task, o.attempt)
	args := append([]string{"-task", o.task, "-attempt", o.attempt, "-workdir", work}, o.flags...)
	args = append(append(args, "--"), o.command...)
	cmd := exec.Command(filepath.Join(bins, "testagent"), args...)
	cmd.Env = append(os.Environ(), o.env...)
	cmd.SysProcAttr = devstack.SysProcAttr()
	logf, err := os.Create(filepath.Join(scratch, o.task+"-"+o.attempt+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, name: o.attempt, cmd: cmd, lines: make(chan line, 1<<16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			var l line
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			if l.Log != "" {
				var s struct {
					Saving  *int `json:"saving"`
					Folders int  `json:"folders"`
				}
				if json.Unmarshal([]byte(l.Log), &s) == nil && s.Saving != nil {
					l.Saving, l.Folders = *s.Saving, s.Folders
				}
			}
			a.mu.Lock()
			a.seen = append(a.seen, l)
			if l.Progress != nil {
				a.last = max(a.last, l.Progress.Step)
			}
			a.mu.Unlock()
			a.lines <- l
		}
		a.err = cmd.Wait()
		logf.Close()
		close(a.lines)
		close(a.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
	})
	return a
}

// waitFor reads lines until one satisfies ok; the process ending first
// fails the test. The deadline only bounds a hung run.
func (a *agent) waitFor(what string, ok func(line) bool) line {
	a.t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case l, more := <-a.lines:
			if !more {
				a.t.Fatalf("%s ended (%v) before %s", a.name, a.err, what)
			}
			if ok(l) {
				return l
			}
		case <-deadline:
			a.t.Fatalf("%s: no %s within 3 minutes", a.name, what)
		}
	}
}

// kill SIGKILLs the agent, as a node dies, and waits for it to be gone.
func (a *agent) kill() {
	_ = syscall.Kill(a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.done
}

// wait waits for the agent to end and returns its last line.
func (a *agent) wait() (line, int) {
	a.t.Helper()
	var last line
	for l := range a.lines {
		if l.Result != nil || l.Error != "" {
			last = l
		}
	}
	<-a.done
	code := 0
	if ee, ok := a.err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return last, code
}

func (a *agent) actions(kind string) []line {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []line
	for _, l := range a.seen {
		if l.Action == kind {
			out = append(out, l)
		}
	}
	return out
}

func (a *agent) lastStep() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// checkpoints opens the job's checkpoints as a reader (no attempt).
func checkpoints(task string) *trainer.Checkpoints {
	return &trainer.Checkpoints{Store: store, Tenant: "acme", TaskID: task, Attempt: "reader"}
}

// headRecord is the newest committed record, read straight from the head.
func headRecord(t *testing.T, task string) *trainer.Record {
	t.Helper()
	var h struct {
		Record *trainer.Record `json:"record"`
	}
	key := storage.TaskPrefix(storage.Checkpoint, "acme", task) + "training/head.json"
	rc, _, err := store.Get(context.Background(), key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h.Record
}

// finalWeights is the sha256 of model.bin in a record's manifest,
// checked against the stored bytes.
func finalWeights(t *testing.T, rec trainer.Record) string {
	t.Helper()
	ctx := context.Background()
	var m trainer.CheckpointManifest
	readJSON(t, rec.Manifest.Key, &m)
	for _, f := range m.Files {
		if f.Name != "model.bin" {
			continue
		}
		rc, _, err := store.Get(ctx, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = bufio.NewReader(rc).WriteTo(h)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); sum != f.SHA256 {
			t.Fatalf("model.bin in the bucket has sha256 %s, its manifest says %s", sum, f.SHA256)
		}
		return f.SHA256
	}
	t.Fatalf("the final model of %s has no model.bin", rec.Manifest.Key)
	return ""
}

func readJSON(t *testing.T, key string, v any) {
	t.Helper()
	rc, _, err := store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// folders lists the checkpoint folders present in the bucket (by their
// manifests), final excluded.
func folders(t *testing.T, task string) []string {
	t.Helper()
	prefix := storage.TaskPrefix(storage.Checkpoint, "acme", task) + "training/"
	infos, err := store.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		name := strings.TrimPrefix(in.Key, prefix)
		if f, ok := strings.CutSuffix(name, ".manifest.json"); ok && !strings.HasSuffix(f, "-final") {
			out = append(out, f)
		}
	}
	return out
}

// objectFolders lists every folder with objects in the bucket, manifest
// or not, final excluded.
func objectFolders(t *testing.T, task string) map[string]bool {
	t.Helper()
	prefix := storage.TaskPrefix(storage.Checkpoint, "acme", task) + "training/"
	infos, err := store.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, in := range infos {
		name := strings.TrimPrefix(in.Key, prefix)
		f, _, _ := strings.Cut(name, "/")
		f = strings.TrimSuffix(f, ".manifest.json")
		if f != "records" && f != "head.json" && !strings.HasSuffix(f, "-final") {
			out[f] = true
		}
	}
	return out
}

// reference runs the job once without interruption and returns the
// sha256 of its final weights; runs of the same flags share it.
var references sync.Map

func reference(t *testing.T, flags []string) string {
	t.Helper()
	key := strings.Join(flags, " ")
	if v, ok := references.Load(key); ok {
		return v.(string)
	}
	sum := sha256.Sum256([]byte(key))
	task := "ref-" + hex.EncodeToString(sum[:6])
	a := startAgent(t, agentOptions{task: task, attempt: "a1", flags: flags})
	last, code := a.wait()
	if code != 0 || last.Result == nil {
		t.Fatalf("the uninterrupted run failed (exit %d): %s", code, last.Error)
	}
	w := finalWeights(t, last.Result.Final)
	references.Store(key, w)
	return w
}
