package batch

import (
	"errors"
	"fmt"
	"time"
)

// ErrFenced means this attempt of the batch may no longer commit: a newer
// attempt holds the checkpoint head, or the server has refused this
// attempt's heartbeat (it timed out and was replaced). It stops without
// writing anything that counts.
var ErrFenced = errors.New("batch: another attempt has taken over this batch")

// Attempt names one attempt of a piece, in the order Temporal started
// them: a retry has the same Scheduled time and a higher Number; a piece
// dispatched again is a new activity, scheduled later. The checkpoint head
// names the attempt that holds it, and each record the attempt that wrote
// it, so that an older attempt that wakes up can tell it is stale before
// it reads anything.
type Attempt struct {
	// Scheduled is when the workflow scheduled the activity (the server's
	// time of the scheduled event).
	Scheduled time.Time `json:"scheduled"`
	// Number is the activity's attempt, from 1.
	Number int32 `json:"number"`
	// ID tells two attempts apart that have the same Scheduled and
	// Number (a poll answered twice); it also names the attempt's parts.
	ID string `json:"id"`
}

// Before reports whether a was started before b.
func (a Attempt) Before(b Attempt) bool {
	if !a.Scheduled.Equal(b.Scheduled) {
		return a.Scheduled.Before(b.Scheduled)
	}
	return a.Number < b.Number
}

// IsZero reports whether a names no attempt (a record or head written
// before attempts were named).
func (a Attempt) IsZero() bool { return a.ID == "" && a.Number == 0 && a.Scheduled.IsZero() }

func (a Attempt) String() string {
	return fmt.Sprintf("attempt %d of the activity scheduled at %s (%s)", a.Number, a.Scheduled.UTC().Format(time.RFC3339Nano), a.ID)
}

// FencedError is how Run ends when the attempt was fenced: it matches
// ErrFenced, and says how many answers the attempt held that no record
// names (they are answered again by the attempt that resumes).
type FencedError struct {
	// Unrecorded is how many answers this attempt had that no checkpoint
	// record holds.
	Unrecorded int
	Err        error
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("%v (%d answer(s) not recorded)", e.Err, e.Unrecorded)
}

func (e *FencedError) Unwrap() error { return e.Err }
