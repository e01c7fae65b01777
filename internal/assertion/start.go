package assertion

import (
	"crypto/ed25519"
	"strconv"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Start is what a start assertion says: the server (or a break-glass
// operator) started this task, for this tenant and submitter, of this
// kind, on exactly this input. TaskWorkflow verifies it before its first
// activity, so a start sent to Temporal by anyone else runs nothing.
type Start struct {
	Task        string
	Tenant      string
	Submitter   string
	Kind        string
	InputKey    string
	InputSHA256 string
	Expires     int64 // Unix seconds
	Nonce       string
	// Key names the key that verified it (KeyID); never signed.
	Key string
}

// StartAction is the action a start assertion's errors name.
const StartAction = "start"

const startHeader = "autoglm-start-v1"

// StartOf is what a start of in must assert.
func StartOf(in task.Input) Start {
	return Start{Task: in.ID, Tenant: in.Tenant, Submitter: in.Submitter, Kind: string(in.Kind), InputKey: in.Source.Key, InputSHA256: in.Source.SHA256}
}

// SignStart asserts st, for ttl (DefaultTTL if 0).
func (s *Signer) SignStart(st Start, ttl time.Duration) string {
	st.Expires, st.Nonce = s.expiry(ttl), nonce()
	return s.seal(st.encode())
}

// VerifyStart checks token against keys, that it asserts exactly want
// (all but Expires, Nonce and Key), and that it had not expired at
// started, the time the server recorded the start. Any failure is a
// PermissionDenied error.
func VerifyStart(keys []ed25519.PublicKey, token string, want Start, started time.Time) (Start, error) {
	payload, key, err := open(keys, token, StartAction)
	if err != nil {
		return Start{}, err
	}
	f := strings.Split(string(payload), "\n")
	if len(f) != 9 || f[0] != startHeader || f[8] == "" {
		return Start{}, task.Errorf(task.PermissionDenied, "the start assertion is malformed")
	}
	exp, err := strconv.ParseInt(f[7], 10, 64)
	if err != nil {
		return Start{}, task.Errorf(task.PermissionDenied, "the start assertion is malformed")
	}
	got := Start{Task: f[1], Tenant: f[2], Submitter: f[3], Kind: f[4], InputKey: f[5], InputSHA256: f[6]}
	if got != want {
		return Start{}, task.Errorf(task.PermissionDenied, "the start assertion is for task %s of %s/%s (%s, input %s sha256 %s), not this start: task %s of %s/%s (%s, input %s sha256 %s)",
			got.Task, got.Tenant, got.Submitter, got.Kind, got.InputKey, got.InputSHA256,
			want.Task, want.Tenant, want.Submitter, want.Kind, want.InputKey, want.InputSHA256)
	}
	if expired(exp, started) {
		return Start{}, task.Errorf(task.PermissionDenied, "the start assertion expired at %s, before this start", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	got.Expires, got.Nonce, got.Key = exp, f[8], key
	return got, nil
}

func (st Start) encode() []byte {
	return []byte(strings.Join([]string{startHeader, st.Task, st.Tenant, st.Submitter, st.Kind, st.InputKey, st.InputSHA256, strconv.FormatInt(st.Expires, 10), st.Nonce}, "\n"))
}
