package task

import (
	"errors"

	"go.temporal.io/sdk/temporal"
)

// Outcome returns the result a task's workflow closed with when it ended
// REJECTED, EXPIRED or CANCELLED: those close as failed executions (so
// Temporal's Web UI does not list them as "Completed"), with the state as
// the error's type and the result as its details.
func Outcome(err error) (Result, bool) {
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || !ae.HasDetails() {
		return Result{}, false
	}
	switch State(ae.Type()) {
	case Rejected, Expired, Cancelled:
	default:
		return Result{}, false
	}
	var res Result
	if ae.Details(&res) != nil {
		return Result{}, false
	}
	return res, true
}
