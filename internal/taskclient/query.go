package taskclient

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// queryTries bounds how often a status query is asked again while the
// workers are too busy to answer it.
const queryTries = 5

// queryStatus asks a run of the task's workflow for its status. A query
// needs a worker to answer it: under load the server may find no recent
// poller on the query's partition, or time out waiting for one. Neither
// says anything about the task, so the query is asked again, with
// backoff, a bounded number of times.
func (c *Client) queryStatus(ctx context.Context, id, run string) (converter.EncodedValue, error) {
	wait := 250 * time.Millisecond
	for try := 1; ; try++ {
		v, err := c.Temporal.QueryWorkflow(ctx, task.WorkflowID(id), run, task.QueryStatus)
		if err == nil || !workersBusy(err) || try == queryTries {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// workersBusy reports whether a query failed only because no worker took
// it in time.
func workersBusy(err error) bool {
	var fp *serviceerror.FailedPrecondition
	var de *serviceerror.DeadlineExceeded
	return errors.As(err, &fp) && strings.Contains(fp.Message, "no poller seen") || errors.As(err, &de)
}
