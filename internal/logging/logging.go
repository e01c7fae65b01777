// Package logging is the one structured log of autoglm-flow: logrus for the
// application, and an adapter that makes it the Temporal SDK's logger, so
// workflow and activity IDs arrive as fields in the same stream.
package logging

import (
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
	"go.temporal.io/sdk/log"
)

// New is a logrus logger writing text or JSON at level to w.
func New(w io.Writer, format, level string) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(w)
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	l.SetLevel(lvl)
	switch format {
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	case "text", "":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	default:
		return nil, fmt.Errorf("logging: format %q is neither text nor json", format)
	}
	return l, nil
}

// SDK adapts a logrus entry to the SDK's log.Logger. There is no official
// adapter; this one keeps key-value pairs as logrus fields.
type SDK struct{ e *logrus.Entry }

var (
	_ log.Logger          = SDK{}
	_ log.WithLogger      = SDK{}
	_ log.WithSkipCallers = SDK{}
)

// NewSDK wraps l.
func NewSDK(l *logrus.Logger) SDK { return SDK{logrus.NewEntry(l)} }

func (s SDK) Debug(msg string, kv ...any) { s.fields(kv).Debug(msg) }
func (s SDK) Info(msg string, kv ...any)  { s.fields(kv).Info(msg) }
func (s SDK) Warn(msg string, kv ...any)  { s.fields(kv).Warn(msg) }
func (s SDK) Error(msg string, kv ...any) { s.fields(kv).Error(msg) }

// With binds fields once, e.g. the workflow ID for a whole run.
func (s SDK) With(kv ...any) log.Logger { return SDK{s.fields(kv)} }

// WithCallerSkip is a no-op: logrus reports callers only when asked, and
// we do not ask.
func (s SDK) WithCallerSkip(int) log.Logger { return s }

func (s SDK) fields(kv []any) *logrus.Entry {
	if len(kv) == 0 {
		return s.e
	}
	f := make(logrus.Fields, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		f[fmt.Sprint(kv[i])] = kv[i+1]
	}
	if len(kv)%2 == 1 {
		f["_extra"] = kv[len(kv)-1]
	}
	return s.e.WithFields(f)
}
