package main

import (
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/sdk/temporal"

	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestExitCodeFollowsTheFailureTypeOfAnEndedTask(t *testing.T) {
	failed := func(typ string) error {
		cause := temporal.NewNonRetryableApplicationError("why", typ, nil)
		return fmt.Errorf("%w: task t is FAILED: %w", errNotCompleted, cause)
	}
	for name, c := range map[string]struct {
		err  error
		want int
	}{
		"refused by authorization": {failed(string(task.PermissionDenied)), exitDenied},
		"bad input":                {failed(string(task.InvalidInput)), exitInvalid},
		"model server":             {failed(string(task.RateLimited)), exitUpstream},
		"failed, no known type":    {failed("TaskFailed"), exitNotDone},
		"cancelled":                {fmt.Errorf("%w: task t is CANCELLED", errNotCompleted), exitNotDone},
		"no node at submit":        {task.Errorf(task.NoNode, "no live node serves m"), exitUpstream},
		"existing task id":         {task.Errorf(task.Conflict, "task t already exists"), exitWrongState},
		"priority 0":               {task.CheckPriority(0), exitInvalid},
		"unexpected":               {errors.New("boom"), exitError},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%s: exit %d, want %d", name, got, c.want)
		}
	}
}

func statusOf(s task.State, c task.Counts, typ task.ErrorType) tclient.Status {
	var st tclient.Status
	st.ID, st.State, st.LastErrorType, st.LastError = "t", s, typ, "why"
	st.Progress.Counts = c
	return st
}
