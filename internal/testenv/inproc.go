package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/worker"
)

// InProcess is a worker in this process: worker.Run on a goroutine,
// stopped by cancelling its context.
type InProcess struct {
	Node   string
	Log    string
	store  storage.Store // the worker's bucket, which may not be the suite's
	cancel context.CancelFunc
	done   chan struct{} // closed when worker.Run has returned
	err    error         // what worker.Run returned, valid after done

	once    sync.Once
	stopped atomic.Bool
	stopErr error
}

// RunWorker runs a worker for cfg.Node in this process, logging to log
// (appended to: a restarted node keeps one log), and waits up to limit
// until it has announced itself in its bucket (cfg.S3, which a test may
// point at a stack of its own), so that dispatch finds it. It returns an
// error, rather than fail a test, so that a TestMain's setUp can use it.
func RunWorker(cfg config.Config, log string, limit time.Duration) (*InProcess, error) {
	store, err := storage.Open(context.Background(), cfg.S3)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	l, err := logging.New(f, "text", "info")
	if err != nil {
		f.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &InProcess{Node: cfg.Node, Log: log, store: store, cancel: cancel, done: make(chan struct{})}
	since := time.Now()
	go func() {
		w.err = worker.Run(ctx, cfg, l)
		f.Close()
		close(w.done)
	}()
	actx, acancel := context.WithTimeout(context.Background(), limit)
	defer acancel()
	for {
		n, err := nodeRecord(actx, store, cfg.Node)
		if err == nil && !n.LastSeen.Before(since) {
			return w, nil
		}
		if err := w.Exited(); err != nil {
			return nil, fmt.Errorf("worker %s exited before it announced itself: %v\n%s", cfg.Node, err, devstack.Tail(log, 40))
		}
		select {
		case <-actx.Done():
			w.Stop()
			return nil, fmt.Errorf("worker %s did not announce itself within %s\n%s", cfg.Node, limit, devstack.Tail(log, 40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartWorkerInProcess is RunWorker for a test: the log is the test's, a
// failure to start fails it, and its cleanup stops the worker and removes
// its node record, which dispatch would count alive for a while.
func (e *Env) StartWorkerInProcess(t testing.TB, cfg config.Config, limit time.Duration) *InProcess {
	t.Helper()
	w, err := RunWorker(cfg, e.LogPath(t, "worker-"+cfg.Node), limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Stop(); err != nil {
			t.Errorf("worker %s: %v", w.Node, err)
		}
		if t.Failed() {
			t.Logf("log of in-process worker %s:\n%s", w.Node, devstack.Tail(w.Log, 60))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.store.Delete(ctx, storage.NodeRecordPrefix+w.Node+".json"); err != nil {
			t.Logf("removing the node record of %s: %v", w.Node, err)
		}
	})
	return w
}

// Exited is what worker.Run returned, once it has; nil while it runs.
func (w *InProcess) Exited() error {
	select {
	case <-w.done:
		return fmt.Errorf("worker.Run returned %v", w.err)
	default:
		return nil
	}
}

// Stopped says whether Stop was called.
func (w *InProcess) Stopped() bool { return w.stopped.Load() }

// Stop cancels the worker and waits for worker.Run to return; later calls
// return what the first did.
func (w *InProcess) Stop() error {
	w.once.Do(func() {
		w.stopped.Store(true)
		w.cancel()
		select {
		case <-w.done:
			w.stopErr = w.err
		case <-time.After(60 * time.Second):
			w.stopErr = errors.New("worker.Run did not return within 60s of its context ending")
		}
	})
	return w.stopErr
}
