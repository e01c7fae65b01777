package taskclient

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/api/serviceerror"
)

// Only a query no worker took in time is asked again; an answer that says
// something about the task (not found, a refused start, a failed query)
// is not.
func TestWorkersBusy(t *testing.T) {
	for _, c := range []struct {
		err  error
		busy bool
	}{
		{serviceerror.NewFailedPrecondition("no poller seen for task queue recently, worker may be down"), true},
		{fmt.Errorf("status: %w", serviceerror.NewDeadlineExceeded("query timed out before a worker could process it")), true},
		{serviceerror.NewFailedPrecondition("workflow is in a state that does not allow this"), false},
		{serviceerror.NewNotFound("workflow not found"), false},
		{serviceerror.NewQueryFailed("unknown query type"), false},
		{context.Canceled, false},
		{errors.New("other"), false},
	} {
		if got := workersBusy(c.err); got != c.busy {
			t.Errorf("workersBusy(%v) = %v; want %v", c.err, got, c.busy)
		}
	}
}
