package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
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
)

// node is one `autoglm worker` process: a node of the fleet.
type node struct {
	name  string
	cache string // its AUTOGLM_CACHE_DIR
	cmd   *exec.Cmd
	log   string
	done  chan struct{}
	err   error
}

// nodeOptions configure a node.
type nodeOptions struct {
	Labels string // AUTOGLM_LABELS
	Models string // AUTOGLM_MODELS
	// ModelURL is the node's model server; "" is the suite's test model.
	ModelURL string
	Env      []string
}

var procs struct {
	sync.Mutex
	m      map[*node]struct{}
	closed bool
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// startNode starts `autoglm worker` as a node of this test's own and waits
// until it has announced itself; the test's cleanup stops it by PID.
func startNode(t *testing.T, short string, o nodeOptions) *node {
	t.Helper()
	name := "fl-" + short + "-" + randHex(3)
	n := &node{name: name, cache: filepath.Join(t.TempDir(), "cache"), done: make(chan struct{})}
	_ = os.MkdirAll(filepath.Join(suite.dir, "logs"), 0o755)
	n.log = filepath.Join(suite.dir, "logs", unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-")+"-"+name+".log")
	f, err := os.Create(n.log)
	if err != nil {
		t.Fatal(err)
	}
	modelURL := o.ModelURL
	if modelURL == "" {
		modelURL = suite.model.URL()
	}
	if o.Models == "" {
		o.Models = "glm-4-test"
	}
	n.cmd = exec.Command(suite.cli, "worker")
	n.cmd.Env = append(os.Environ(), "AUTOGLM_NODE="+name, "AUTOGLM_LLM_BASE_URL="+modelURL, "AUTOGLM_MODELS="+o.Models,
		"AUTOGLM_LABELS="+o.Labels, "AUTOGLM_CACHE_DIR="+n.cache, "AUTOGLM_MIRROR_STAGING_DIR="+filepath.Join(t.TempDir(), "staging"))
	n.cmd.Env = append(n.cmd.Env, o.Env...)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	since := time.Now()
	procs.Lock()
	if procs.closed {
		procs.Unlock()
		t.Fatal("the run is being interrupted")
	}
	if err := n.cmd.Start(); err != nil {
		procs.Unlock()
		t.Fatal(err)
	}
	if procs.m == nil {
		procs.m = map[*node]struct{}{}
	}
	procs.m[n] = struct{}{}
	procs.Unlock()
	go func() {
		n.err = n.cmd.Wait()
		f.Close()
		procs.Lock()
		delete(procs.m, n)
		procs.Unlock()
		close(n.done)
	}()
	t.Cleanup(func() {
		n.stop(30 * time.Second)
		if t.Failed() {
			t.Logf("log of node %s:\n%s", name, devstack.Tail(n.log, 60))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = suite.store.Delete(ctx, "fleet/nodes/"+name+".json")
	})
	ctx := testCtx(t, 90*time.Second)
	eventually(t, ctx, "node "+name+" to announce itself", func() (bool, error) {
		select {
		case <-n.done:
			return false, fmt.Errorf("worker exited: %v\n%s", n.err, devstack.Tail(n.log, 30))
		default:
		}
		rec, err := nodeRecord(ctx, name)
		return err == nil && !rec.LastSeen.Before(since), err
	})
	return n
}

func nodeRecord(ctx context.Context, name string) (activities.Node, error) {
	var rec activities.Node
	r, _, err := suite.store.Get(ctx, "fleet/nodes/"+name+".json")
	if err != nil {
		return rec, err
	}
	defer r.Close()
	return rec, json.NewDecoder(r).Decode(&rec)
}

// kill sends SIGKILL, as a crash would.
func (n *node) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// stop sends SIGTERM and after grace SIGKILL, by PID.
func (n *node) stop(grace time.Duration) {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(grace):
		n.kill()
	}
}

// stopProcWorkers stops the nodes still running when the run ends.
func stopProcWorkers() {
	procs.Lock()
	procs.closed = true
	var ns []*node
	for n := range procs.m {
		ns = append(ns, n)
	}
	procs.Unlock()
	for _, n := range ns {
		n.stop(10 * time.Second)
	}
}

// runCLI runs the autoglm binary and returns its stdout and exit code.
func runCLI(t *testing.T, ctx context.Context, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, suite.cli, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		t.Logf("autoglm %s: exit %d: %s", strings.Join(args, " "), ee.ExitCode(), strings.TrimSpace(errOut.String()))
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("autoglm %s: %v", strings.Join(args, " "), err)
	return "", -1
}

// Shared with the other integration packages (internal/testenv).
var (
	randHex = testenv.RandHex
)
