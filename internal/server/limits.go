package server

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// Limits bound what requests may hold at once, so that no user, and no
// crowd of users, can take the server's disk, memory or Temporal calls.
// A zero field takes its default.
type Limits struct {
	// Uploads is how many request bodies may be spooled at once, in all
	// (default 32); UploadsPerUser, by one user (default 4).
	Uploads        int
	UploadsPerUser int
	// SpoolBytes is how many bytes of request bodies may sit in TempDir
	// at once, in all (default 4 GiB); SpoolBytesPerUser, for one user
	// (default 1 GiB).
	SpoolBytes        int64
	SpoolBytesPerUser int64
	// LongPollsPerUser is how many change or result long polls one user
	// may hold open at once (default 64).
	LongPollsPerUser int
}

// The defaults of Limits.
const (
	DefaultUploads           = 32
	DefaultUploadsPerUser    = 4
	DefaultSpoolBytes        = 4 << 30
	DefaultSpoolBytesPerUser = 1 << 30
	DefaultLongPollsPerUser  = 64
)

// LimitsFromEnv reads the AUTOGLM_SERVER_* limits; an unset one takes
// its default.
func LimitsFromEnv() (Limits, error) {
	var l Limits
	for _, c := range []struct {
		name string
		n    *int
	}{
		{"AUTOGLM_SERVER_UPLOADS", &l.Uploads},
		{"AUTOGLM_SERVER_UPLOADS_PER_USER", &l.UploadsPerUser},
		{"AUTOGLM_SERVER_LONG_POLLS_PER_USER", &l.LongPollsPerUser},
	} {
		if v := os.Getenv(c.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return l, fmt.Errorf("%s=%q is not a positive number", c.name, v)
			}
			*c.n = n
		}
	}
	for _, c := range []struct {
		name string
		n    *int64
	}{
		{"AUTOGLM_SERVER_SPOOL_BYTES", &l.SpoolBytes},
		{"AUTOGLM_SERVER_SPOOL_BYTES_PER_USER", &l.SpoolBytesPerUser},
	} {
		if v := os.Getenv(c.name); v != "" {
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 {
				return l, fmt.Errorf("%s=%q is not a size like 4GiB", c.name, v)
			}
			*c.n = int64(n)
		}
	}
	return l.withDefaults(), nil
}

func (l Limits) withDefaults() Limits {
	if l.Uploads <= 0 {
		l.Uploads = DefaultUploads
	}
	if l.UploadsPerUser <= 0 {
		l.UploadsPerUser = DefaultUploadsPerUser
	}
	if l.SpoolBytes <= 0 {
		l.SpoolBytes = DefaultSpoolBytes
	}
	if l.SpoolBytesPerUser <= 0 {
		l.SpoolBytesPerUser = DefaultSpoolBytesPerUser
	}
	if l.LongPollsPerUser <= 0 {
		l.LongPollsPerUser = DefaultLongPollsPerUser
	}
	return l
}

// The timeouts of the HTTP server. Long polls last up to maxLongPoll, so
// a response may take that long to start: the write timeout leaves room
// for it. Uploads and downloads of big files extend their own deadlines
// (transferTimeout) through http.ResponseController.
const (
	maxLongPoll       = 60 * time.Second
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 90 * time.Second
	writeTimeout      = maxLongPoll + 30*time.Second
	idleTimeout       = 2 * time.Minute
	transferTimeout   = 30 * time.Minute
)

// HTTPServer is an http.Server for the handler with timeouts sized for
// the long polls: a client that stops sending or reading is cut off, a
// long poll is not.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
	}
}

// extendTransfer gives a request that moves a big body up to
// transferTimeout, past the server's own read and write timeouts.
func extendTransfer(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(transferTimeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)
}

// limitError is a request refused for a limit of the server: 429 when a
// count is reached (try again soon), 507 when the spool has no room.
type limitError struct {
	status int
	msg    string
}

func (e *limitError) Error() string { return e.msg }

// errorType is the stable type the API shows for the refusal.
func (e *limitError) errorType() string {
	if e.status == http.StatusInsufficientStorage {
		return "InsufficientStorage"
	}
	return "RateLimited"
}

// retryAfterSeconds is what a refused client is told to wait.
const retryAfterSeconds = 5

func setRetryAfter(w http.ResponseWriter, err error) {
	if _, ok := err.(*limitError); ok {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
}

// counter counts what users hold at once, per user and in all.
type counter struct {
	mu              sync.Mutex
	total, maxTotal int64
	byUser          map[string]int64
	maxUser         int64
}

func newCounter(maxTotal, maxUser int64) *counter {
	return &counter{maxTotal: maxTotal, maxUser: maxUser, byUser: map[string]int64{}}
}

// take adds n for user if both caps allow it. perUser says, on refusal,
// which cap refused.
func (c *counter) take(user string, n int64) (ok, perUser bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byUser[user]+n > c.maxUser {
		return false, true
	}
	if c.total+n > c.maxTotal {
		return false, false
	}
	c.byUser[user] += n
	c.total += n
	return true, false
}

func (c *counter) give(user string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total -= n
	if c.byUser[user] -= n; c.byUser[user] <= 0 {
		delete(c.byUser, user)
	}
}

// held is what user holds, and what all hold.
func (c *counter) held(user string) (int64, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byUser[user], c.total
}

// limiter holds the server's counters.
type limiter struct {
	limits    Limits
	uploads   *counter
	spooled   *counter
	longPolls *counter
}

func newLimiter(l Limits) *limiter {
	l = l.withDefaults()
	return &limiter{
		limits:    l,
		uploads:   newCounter(int64(l.Uploads), int64(l.UploadsPerUser)),
		spooled:   newCounter(l.SpoolBytes, l.SpoolBytesPerUser),
		longPolls: newCounter(1<<62, int64(l.LongPollsPerUser)),
	}
}

// startUpload takes one upload slot of user's; release gives it back.
func (l *limiter) startUpload(user string) (release func(), err error) {
	if ok, perUser := l.uploads.take(user, 1); !ok {
		if perUser {
			return nil, &limitError{http.StatusTooManyRequests, fmt.Sprintf("%s already has %d uploads in progress; try again when one ends", user, l.limits.UploadsPerUser)}
		}
		return nil, &limitError{http.StatusTooManyRequests, fmt.Sprintf("the server has %d uploads in progress; try again shortly", l.limits.Uploads)}
	}
	return func() { l.uploads.give(user, 1) }, nil
}

// startLongPoll takes one of user's long polls; release gives it back.
func (l *limiter) startLongPoll(user string) (release func(), err error) {
	if ok, _ := l.longPolls.take(user, 1); !ok {
		return nil, &limitError{http.StatusTooManyRequests, fmt.Sprintf("%s already has %d long polls open; close one or wait less often", user, l.limits.LongPollsPerUser)}
	}
	return func() { l.longPolls.give(user, 1) }, nil
}

// reserveSpool books n more bytes of spool for user.
func (l *limiter) reserveSpool(user string, n int64) error {
	if ok, perUser := l.spooled.take(user, n); !ok {
		if perUser {
			return &limitError{http.StatusInsufficientStorage, fmt.Sprintf("%s's uploads in progress fill the %d bytes the server keeps for one user; try again when one ends", user, l.limits.SpoolBytesPerUser)}
		}
		return &limitError{http.StatusInsufficientStorage, fmt.Sprintf("the server's %d bytes for uploads in progress are full; try again shortly", l.limits.SpoolBytes)}
	}
	return nil
}
