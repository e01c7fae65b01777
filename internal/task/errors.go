package task

import (
	"errors"
	"fmt"
)

// ErrorType is a stable name for a kind of failure. It is the Temporal
// application error type, so callers and the CLI can act on it without
// parsing messages.
type ErrorType string

// The error types of autoglm-flow.
const (
	InvalidInput          ErrorType = "InvalidInput"
	UnknownTenant         ErrorType = "UnknownTenant"
	PermissionDenied      ErrorType = "PermissionDenied"
	ModelNotAllowed       ErrorType = "ModelNotAllowed"
	QuotaExceeded         ErrorType = "QuotaExceeded"
	ScreeningFailed       ErrorType = "ScreeningFailed"
	WrongState            ErrorType = "WrongState"
	Conflict              ErrorType = "Conflict"
	NotFound              ErrorType = "NotFound"
	RateLimited           ErrorType = "RateLimited"
	UpstreamUnavailable   ErrorType = "UpstreamUnavailable"
	ContextLengthExceeded ErrorType = "ContextLengthExceeded"
	NoNode                ErrorType = "NoNode"
	// Fenced: another attempt of the same inference took over; this one
	// stopped without writing anything that counts.
	Fenced ErrorType = "Fenced"
	// CorruptPart: a stored part of the output no longer matches the size
	// and sha256 its checkpoint recorded.
	CorruptPart ErrorType = "CorruptPart"
	// HandBack: a node's model server stayed down past the hold limit; the
	// node recorded its checkpoint and gives the work back to dispatch.
	HandBack ErrorType = "HandBack"
)

// types are the ErrorTypes above.
var types = map[ErrorType]bool{
	InvalidInput: true, UnknownTenant: true, PermissionDenied: true, ModelNotAllowed: true,
	QuotaExceeded: true, ScreeningFailed: true, WrongState: true, Conflict: true, NotFound: true,
	RateLimited: true, UpstreamUnavailable: true, ContextLengthExceeded: true, NoNode: true,
	Fenced: true, CorruptPart: true, HandBack: true,
}

// Known reports whether t is one of the project's error types, rather
// than a name the SDK made up for an untyped error (such as the Go type
// of a wrapped error), which means nothing to a user.
func (t ErrorType) Known() bool { return types[t] }

// Error is an error with a stable type. Compare with errors.Is against the
// sentinels below: errors.Is(err, task.ErrPermissionDenied).
type Error struct {
	Type ErrorType
	Msg  string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return string(e.Type)
	}
	return e.Msg
}

// Is matches any *Error of the same type, so a sentinel matches every
// message of its type.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Type == e.Type
}

// Sentinels for errors.Is.
var (
	ErrInvalidInput     = &Error{Type: InvalidInput}
	ErrUnknownTenant    = &Error{Type: UnknownTenant}
	ErrPermissionDenied = &Error{Type: PermissionDenied}
	ErrModelNotAllowed  = &Error{Type: ModelNotAllowed}
	ErrQuotaExceeded    = &Error{Type: QuotaExceeded}
	ErrScreeningFailed  = &Error{Type: ScreeningFailed}
	ErrWrongState       = &Error{Type: WrongState}
	ErrConflict         = &Error{Type: Conflict}
	ErrNotFound         = &Error{Type: NotFound}
)

// Errorf makes an *Error of type t.
func Errorf(t ErrorType, format string, args ...any) error {
	return &Error{Type: t, Msg: fmt.Sprintf(format, args...)}
}

// TypeOf is the type of the first *Error in err's chain, or "" if none.
func TypeOf(err error) ErrorType {
	var e *Error
	if errors.As(err, &e) {
		return e.Type
	}
	return ""
}
