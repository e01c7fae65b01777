package assertion

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
	// ValidationKey and ValidationSHA256 are a fine-tuning task's
	// validation file; TrainingDigest is the digest of the rest of its
	// request (FineTuneDigest). All three are empty for other kinds.
	ValidationKey    string
	ValidationSHA256 string
	TrainingDigest   string
	Expires          int64 // Unix seconds
	Nonce            string
	// Key names the key that verified it (KeyID); never signed.
	Key string
}

// StartAction is the action a start assertion's errors name.
const StartAction = "start"

// A start of a batch is signed in the v1 layout, which holds no
// fine-tuning fields; a fine-tuning start in v2, which adds them. A v1
// start of a fine-tuning task asserts empty fine-tuning fields, so it
// matches no real one.
const (
	startHeader   = "autoglm-start-v1"
	startHeaderV2 = "autoglm-start-v2"
)

// StartOf is what a start of in must assert.
func StartOf(in task.Input) Start {
	st := Start{Task: in.ID, Tenant: in.Tenant, Submitter: in.Submitter, Kind: string(in.Kind), InputKey: in.Source.Key, InputSHA256: in.Source.SHA256}
	if ft := in.FineTune; ft != nil {
		if v := ft.ValidationFile; v != nil {
			st.ValidationKey, st.ValidationSHA256 = v.Key, v.SHA256
		}
		st.TrainingDigest = FineTuneDigest(*ft)
	}
	return st
}

// FineTuneDigest is the sha256 of what a fine-tuning task trains with
// besides its files: the hyperparameters as given ("auto" or a number),
// the seed and the suffix.
func FineTuneDigest(ft task.FineTune) string {
	b, _ := json.Marshal(struct {
		Hyperparameters task.Hyperparameters `json:"hyperparameters"`
		Seed            int64                `json:"seed"`
		Suffix          string               `json:"suffix"`
	}{ft.Hyperparameters, ft.Seed, ft.Suffix})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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
	got, exp, ok := decodeStart(string(payload))
	if !ok {
		return Start{}, task.Errorf(task.PermissionDenied, "the start assertion is malformed")
	}
	if got != want {
		return Start{}, task.Errorf(task.PermissionDenied, "the start assertion is for %s, not this start: %s", got.describe(), want.describe())
	}
	if expired(exp, started) {
		return Start{}, task.Errorf(task.PermissionDenied, "the start assertion expired at %s, before this start", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	got.Expires, got.Nonce, got.Key = exp, nonceOf(payload), key
	return got, nil
}

// describe says what a start asserts, for a refusal.
func (st Start) describe() string {
	s := fmt.Sprintf("task %s of %s/%s (%s, input %s sha256 %s", st.Task, st.Tenant, st.Submitter, st.Kind, st.InputKey, st.InputSHA256)
	if st.ValidationKey != "" {
		s += fmt.Sprintf(", validation %s sha256 %s", st.ValidationKey, st.ValidationSHA256)
	}
	if st.TrainingDigest != "" {
		s += ", hyperparameters " + st.TrainingDigest[:16]
	}
	return s + ")"
}

// decodeStart reads a v1 or v2 payload, without its nonce.
func decodeStart(payload string) (Start, int64, bool) {
	f := strings.Split(payload, "\n")
	var st Start
	var exp string
	switch {
	case len(f) == 9 && f[0] == startHeader:
		st = Start{Task: f[1], Tenant: f[2], Submitter: f[3], Kind: f[4], InputKey: f[5], InputSHA256: f[6]}
		exp = f[7]
	case len(f) == 12 && f[0] == startHeaderV2:
		st = Start{Task: f[1], Tenant: f[2], Submitter: f[3], Kind: f[4], InputKey: f[5], InputSHA256: f[6],
			ValidationKey: f[7], ValidationSHA256: f[8], TrainingDigest: f[9]}
		exp = f[10]
	default:
		return Start{}, 0, false
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || f[len(f)-1] == "" {
		return Start{}, 0, false
	}
	return st, n, true
}

// nonceOf is a payload's last field, its nonce.
func nonceOf(payload []byte) string {
	s := string(payload)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func (st Start) encode() []byte {
	exp := strconv.FormatInt(st.Expires, 10)
	if st.ValidationKey == "" && st.ValidationSHA256 == "" && st.TrainingDigest == "" {
		return []byte(strings.Join([]string{startHeader, st.Task, st.Tenant, st.Submitter, st.Kind, st.InputKey, st.InputSHA256, exp, st.Nonce}, "\n"))
	}
	return []byte(strings.Join([]string{startHeaderV2, st.Task, st.Tenant, st.Submitter, st.Kind, st.InputKey, st.InputSHA256,
		st.ValidationKey, st.ValidationSHA256, st.TrainingDigest, exp, st.Nonce}, "\n"))
}
