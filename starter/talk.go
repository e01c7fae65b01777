package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// waitLineEvery is how often a wait without a terminal says it still
// waits.
const waitLineEvery = 10 * time.Second

// waiting tells the user on stderr that what is under way, until stop: a
// spinner with the time spent on a terminal, a line every few seconds
// otherwise. Standard output stays for the result (and --json).
func waiting(what string) (stop func()) {
	return waitingOn(os.Stderr, term.IsTerminal(int(os.Stderr.Fd())), what, waitLineEvery)
}

func waitingOn(w io.Writer, spinner bool, what string, every time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		if spinner {
			bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionSpinnerType(14),
				progressbar.OptionSetDescription(what), progressbar.OptionSetElapsedTime(true))
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					_ = bar.Exit()
					fmt.Fprintln(w)
					return
				case <-t.C:
					_ = bar.Add(1)
				}
			}
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "still waiting: %s (%s so far)\n", what, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// reachHint turns a network failure into a sentence naming what could
// not be reached and the setting to check; other errors pass unchanged.
func reachHint(err error, what, setting string) error {
	if err == nil || !isNetwork(err) {
		return err
	}
	return &hinted{err: err, hint: fmt.Sprintf("%s could not be reached: check %s", what, setting)}
}

// hinted is an error with a sentence that says what to check; sentence
// shows it below the error's own message.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() + "\n" + h.hint }
func (h *hinted) Unwrap() error { return h.err }

// networkWords mark a network failure in an error that crossed Temporal
// or HTTP as text.
var networkWords = []string{"dial tcp", "connection refused", "no such host", "i/o timeout", "connection reset", "TLS handshake timeout", "network is unreachable"}

func isNetwork(err error) bool {
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) {
		return true
	}
	msg := err.Error()
	for _, w := range networkWords {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}

// reach names the setting to check when err is a network failure: the
// server's address when the server could not be called, else the
// upstream's (the model hub of the models verbs, which the workers
// reach), if one is given.
func (c *cli) reach(err error, upstream ...string) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "calling the autoglm server") {
		return reachHint(err, "the autoglm server", "AUTOGLM_SERVER, or run `autoglm login`")
	}
	if len(upstream) == 1 {
		return reachHint(err, "the model hub", upstreamSetting(upstream[0])+" (the workers' setting)")
	}
	return err
}
