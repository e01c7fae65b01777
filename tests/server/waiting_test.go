package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// TestWaitingWithoutWorkers: users waiting on their tasks (submit --wait
// and watch, through the same apiclient code the CLI runs) do not need a
// worker to answer them. With the worker stopped, 60 users submit and
// wait, and the server keeps them waiting without an error; the worker
// starts, is stopped again after the first tasks complete, and starts
// once more: every task completes and every wait ends with its result.
func TestWaitingWithoutWorkers(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	const users, watchers = 60, 20
	if err := suite.worker.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The next tests need the worker back, whatever happened here.
		if suite.worker.Stopped() {
			w, err := startWorker("server-test")
			if err != nil {
				t.Fatal(err)
			}
			suite.worker = w
		}
	})

	api := apiclient.New(suite.url, suite.keys["alice"])
	var submitted, completed atomic.Int32
	errs := make(chan error, users)
	ids := make(chan string, users)
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub, err := api.Submit(ctx, taskclient.SubmitRequest{Model: "glm-4-test", Prompt: fmt.Sprintf("wait test %d", i)}, nil)
			if err != nil {
				errs <- fmt.Errorf("submit %d: %w", i, err)
				return
			}
			submitted.Add(1)
			ids <- sub.ID
			var state task.State
			if i < watchers {
				state, err = watchChanges(ctx, api, sub.ID)
			} else {
				var res task.Result
				res, err = api.Wait(ctx, sub.ID)
				state = res.State
			}
			switch {
			case err != nil:
				errs <- fmt.Errorf("waiting on %s: %w", sub.ID, err)
			case state != task.Completed:
				errs <- fmt.Errorf("task %s ended %s", sub.ID, state)
			default:
				completed.Add(1)
			}
		}()
	}
	eventually(t, ctx, "every user to submit", func() (bool, error) {
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		return submitted.Load() == users, nil
	})
	// No worker: the server still answers a bounded wait, with 202.
	id := <-ids
	if code, body := call(t, ctx, "alice", "GET", "/api/v1/tasks/"+id+"/result?wait=1s", nil); code != http.StatusAccepted {
		t.Fatalf("a wait with no worker: %d %s", code, body)
	}

	restart := func() *testenv.InProcess {
		w, err := startWorker("server-test")
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	suite.worker = restart()
	eventually(t, ctx, "the first tasks to complete", func() (bool, error) { return completed.Load() >= 5, nil })
	if err := suite.worker.Stop(); err != nil {
		t.Fatal(err)
	}
	suite.worker = restart()

	wg.Wait()
	close(errs)
	failures := 0
	for err := range errs {
		t.Error(err)
		failures++
	}
	t.Logf("%d users waited (%d through changes, %d through the result long poll) across a stopped and a restarted worker: %d completed, %d failures",
		users, watchers, users-watchers, completed.Load(), failures)
}

// watchChanges follows the changes endpoint as `autoglm watch` does, until
// the task's result.
func watchChanges(ctx context.Context, api *apiclient.Client, id string) (task.State, error) {
	var after int64
	for {
		cs, err := api.Changes(ctx, id, after, 20*time.Second)
		if err != nil {
			return "", err
		}
		for _, e := range cs.Changes {
			after = e.Seq
			if e.Result != nil {
				return e.Result.State, nil
			}
		}
		if cs.Final {
			res, err := api.Wait(ctx, id)
			return res.State, err
		}
	}
}

// TestEightyCLIUsersWait: 80 `autoglm submit --wait` processes at once,
// each a user on their own machine talking to the server: every one exits
// 0 with its task COMPLETED (before the server, polling a status query
// from each made most of them exit 1).
func TestEightyCLIUsersWait(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	const users = 80
	env := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["alice"])
	codes := make(chan int, users)
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, code := autoglm(t, ctx, env, "", "submit", "--model", "glm-4-test", "--wait", "--json", fmt.Sprintf("user %d waits", i))
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	failed := 0
	for code := range codes {
		if code != 0 {
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d `submit --wait` exited non-zero", failed, users)
	}
	t.Logf("%d concurrent `autoglm submit --wait` through the server: all exited 0", users)
}
