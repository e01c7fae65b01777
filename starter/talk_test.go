package main

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A mirror that failed for an unreachable hub, as it comes back from the
// workflow: an untyped error the SDK names after its Go type.
func TestUnreachableHubIsASentenceWithTheSetting(t *testing.T) {
	cause := temporal.NewApplicationError(`copying THUDM/glm@main: Get "http://127.0.0.1:1/api/models/THUDM/glm/revision/main": dial tcp 127.0.0.1:1: connect: connection refused`, "wrapError")
	err := (&cli{}).reach(fmt.Errorf("mirror failed: %w", cause), task.UpstreamHF)
	msg := sentence(err)
	if strings.Contains(msg, "wrapError") || !strings.Contains(msg, "AUTOGLM_HF_ENDPOINT") || !strings.Contains(msg, "could not be reached") {
		t.Errorf("message %q: want no internal type name, and the setting to check", msg)
	}
	if got := exitCode(err); got != exitError {
		t.Errorf("exit %d, want %d", got, exitError)
	}
	if msg := sentence((&cli{}).reach(errors.New("calling the autoglm server at http://x: dial tcp: no such host"))); !strings.Contains(msg, "AUTOGLM_SERVER") {
		t.Errorf("message %q does not name AUTOGLM_SERVER", msg)
	}
	plain := errors.New("the repo has no such revision")
	if got := (&cli{}).reach(plain, task.UpstreamHTTP); got != plain {
		t.Errorf("a failure that is not the network's changed: %v", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Without a terminal, a wait says now and then what it waits for, and
// nothing once it is over.
func TestWaitingSaysWhatItWaitsFor(t *testing.T) {
	var out syncBuffer
	stop := waitingOn(&out, false, "mirroring m@main into the bucket", time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "still waiting: mirroring m@main into the bucket") {
		if time.Now().After(deadline) {
			t.Fatalf("no waiting line: %q", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	after := out.String()
	time.Sleep(5 * time.Millisecond)
	if out.String() != after {
		t.Errorf("lines after stop: %q", strings.TrimPrefix(out.String(), after))
	}
}

func TestExitCodeOfACompletedTaskWhoseEveryItemFailed(t *testing.T) {
	st := ending(statusOf(task.Completed, task.Counts{Total: 3, Failed: 3}, ""))
	if got := exitCode(st); got != exitAllFailed {
		t.Errorf("all failed: exit %d, want %d", got, exitAllFailed)
	}
	if err := ending(statusOf(task.Completed, task.Counts{Total: 3, Completed: 1, Failed: 2}, "")); err != nil {
		t.Errorf("some answered: %v", err)
	}
	if got := exitCode(ending(statusOf(task.Failed, task.Counts{}, task.InvalidInput))); got != exitInvalid {
		t.Errorf("FAILED InvalidInput: exit %d, want %d", got, exitInvalid)
	}
	if msg := sentence(ending(statusOf(task.Failed, task.Counts{}, "wrapError"))); strings.Contains(msg, "wrapError") {
		t.Errorf("message %q names an internal type", msg)
	}
}
