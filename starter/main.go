// Command autoglm is the CLI of autoglm-flow: it submits tasks and drives
// them (status, watch, approve, reject, cancel, results), runs a worker
// (`autoglm worker`), and starts the local stack for development
// (`autoglm dev`, `autoglm demo`).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if ctx.Err() != nil && err != nil {
		// Ctrl-C (or a TERM) cut a wait short: the user asked to leave; no
		// error to show. The task goes on; `autoglm watch` picks it up
		// again. A worker or server that stopped cleanly on the signal
		// returns nil and exits 0.
		os.Exit(exitInterrupted)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "autoglm:", sentence(err))
	}
	os.Exit(exitCode(err))
}

// Exit codes, by the type of the error, so scripts can act on them.
const (
	exitOK         = 0
	exitError      = 1 // anything unexpected: the message says what
	exitInvalid    = 2 // bad flags or input
	exitDenied     = 3 // PermissionDenied, UnknownTenant, ModelNotAllowed, QuotaExceeded
	exitNotFound   = 4 // no such task
	exitWrongState = 5 // the task is not in a state for that, or a conflict
	exitNotDone    = 6 // the task ended, but not COMPLETED
	exitUpstream   = 7 // the model server failed the task, or no node serves the model
	exitAllFailed  = 8 // the task COMPLETED, but every one of its items failed
	// exitInterrupted is the shell's code for a process ended by SIGINT
	// (128+2): Ctrl-C leaves watch or submit --wait quietly.
	exitInterrupted = 130
)

// errNotCompleted marks a task that ended in another state than COMPLETED.
var errNotCompleted = errors.New("task did not complete")

// errAllFailed marks a COMPLETED task none of whose items was answered
// well: nothing for a script to use, so no success either.
var errAllFailed = errors.New("every item failed")

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	switch errType(err) {
	case string(task.InvalidInput), string(task.ScreeningFailed):
		return exitInvalid
	case string(task.PermissionDenied), string(task.UnknownTenant), string(task.ModelNotAllowed), string(task.QuotaExceeded):
		return exitDenied
	case string(task.NotFound):
		return exitNotFound
	case string(task.WrongState), string(task.Conflict):
		return exitWrongState
	case string(task.RateLimited), string(task.UpstreamUnavailable), string(task.ContextLengthExceeded), string(task.NoNode), string(task.HandBack):
		return exitUpstream
	}
	// A task that ended otherwise: after its failure's type, if known.
	if errors.Is(err, errNotCompleted) {
		return exitNotDone
	}
	if errors.Is(err, errAllFailed) {
		return exitAllFailed
	}
	if errors.Is(err, errUsage) {
		return exitInvalid
	}
	return exitError
}

// errType is the stable type of err: a Temporal application error's type,
// or the project's own.
func errType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) && ae.Type() != "" {
		return ae.Type()
	}
	return string(task.TypeOf(err))
}

// sentence is err as a person should read it: an application error's own
// message, without the layers of wrapping around it.
func sentence(err error) string {
	var h *hinted
	if errors.As(err, &h) {
		return sentence(h.err) + "\n" + h.hint
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		if t := task.ErrorType(ae.Type()); t.Known() {
			return string(t) + ": " + ae.Message()
		}
		return ae.Message()
	}
	if t := task.TypeOf(err); t.Known() {
		return string(t) + ": " + err.Error()
	}
	return err.Error()
}
