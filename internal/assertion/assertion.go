// Package assertion is the signed statement that carries who acts on a
// task from the API server to the workflow: ed25519 over (task id, action,
// actor, the actor's roles in the task's tenant, expiry, a nonce, the
// digest of the update's input). Its sibling, the start assertion
// (start.go), vouches for a task's start. The server, which
// authenticated the user and read the policy, signs; the update validators
// verify with the public keys the workers are given and check the action
// against the signed roles. A caller of Temporal who is not the server
// cannot make one, so neither the actor of an update nor their roles are
// what the caller says, and the workflow needs no copy of the policy.
package assertion

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// DefaultTTL is how long an assertion is good for: long enough for an
// update to reach a busy worker, short enough that a leaked one is soon
// useless.
const DefaultTTL = 2 * time.Minute

// Leeway is how far past its expiry an assertion is still taken: the
// clocks of the server that signs and the worker that verifies differ a
// little.
const Leeway = 30 * time.Second

// Claims is what an assertion says.
type Claims struct {
	Task   string
	Action string
	Actor  string
	// Roles are the actor's roles in the task's tenant when the server
	// signed: a role removed from the policy stops counting with the next
	// assertion, at most DefaultTTL later.
	Roles   []authz.Role
	Expires int64 // Unix seconds
	// Nonce makes each assertion single-use: the task remembers the
	// nonces it has taken until they expire.
	Nonce string
	// Input is the digest of what the update carries besides its actor
	// (task.DecisionRequest.Digest), so an edited reason or priority does
	// not verify; empty for an action that carries nothing.
	Input string
	// Key names the signer's public key (KeyID), for the audit trail and
	// for telling a break-glass key from the server's; Verify checks that
	// the key it names is the one that verified it.
	Key string
}

// Signer makes assertions with one private key.
type Signer struct {
	key ed25519.PrivateKey
	// Now is the clock, for tests; nil is time.Now.
	Now func() time.Time
}

// NewSigner signs with key.
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// Public is the key the workers need to verify this signer's assertions.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign asserts that actor, who holds roles in the task's tenant, takes
// action on task, for ttl (DefaultTTL if 0), with no input besides.
func (s *Signer) Sign(taskID, action, actor string, roles []authz.Role, ttl time.Duration) string {
	return s.SignInput(taskID, action, actor, roles, "", ttl)
}

// SignInput is Sign for an action whose input has digest input.
func (s *Signer) SignInput(taskID, action, actor string, roles []authz.Role, input string, ttl time.Duration) string {
	payload := Claims{Task: taskID, Action: action, Actor: actor, Roles: roles, Expires: s.expiry(ttl), Nonce: nonce(), Input: input, Key: KeyID(s.Public())}.encode()
	return s.seal(payload)
}

func (s *Signer) expiry(ttl time.Duration) int64 {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	return now().Add(ttl).Unix()
}

func (s *Signer) seal(payload []byte) string {
	return b64(payload) + "." + b64(ed25519.Sign(s.key, payload))
}

// nonce is 128 random bits.
func nonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b64(b)
}

// KeyID names a public key in the audit trail without printing it: the
// first 16 hex digits of its sha256.
func KeyID(k ed25519.PublicKey) string {
	sum := sha256.Sum256(k)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// Verify checks token against keys and that it asserts exactly (task,
// action, actor) and has not expired at now, and returns what it asserts,
// the actor's roles among it. Any failure is a PermissionDenied error that
// names no secret.
func Verify(keys []ed25519.PublicKey, token, taskID, action, actor string, now time.Time) (Claims, error) {
	return VerifyInput(keys, token, taskID, action, actor, "", now)
}

// VerifyInput is Verify for an action whose input has digest input: an
// assertion signed over another input is refused.
func VerifyInput(keys []ed25519.PublicKey, token, taskID, action, actor, input string, now time.Time) (Claims, error) {
	payload, key, err := open(keys, token, action)
	if err != nil {
		return Claims{}, err
	}
	c, err := decode(payload)
	if err != nil {
		return Claims{}, err
	}
	if c.Key != key {
		return Claims{}, task.Errorf(task.PermissionDenied, "the actor assertion names key %s but is signed by %s", c.Key, key)
	}
	if c.Task != taskID || c.Action != action || c.Actor != actor {
		return Claims{}, task.Errorf(task.PermissionDenied, "the actor assertion is for %s on task %s by %s, not %s on task %s by %s", c.Action, c.Task, c.Actor, action, taskID, actor)
	}
	if c.Input != input {
		return Claims{}, task.Errorf(task.PermissionDenied, "the actor assertion was signed over another input: the %s's reason or priority differs from what the server signed", action)
	}
	if expired(c.Expires, now) {
		return Claims{}, task.Errorf(task.PermissionDenied, "the actor assertion expired at %s", time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// expired tells whether an assertion that expires at exp (Unix seconds)
// is past it at now, with Leeway.
func expired(exp int64, now time.Time) bool {
	return now.Add(-Leeway).Unix() > exp
}

// open checks token's signature against keys and returns its payload and
// the ID of the key that signed it.
func open(keys []ed25519.PublicKey, token, action string) ([]byte, string, error) {
	if len(keys) == 0 {
		return nil, "", task.Errorf(task.PermissionDenied, "this worker has no assertion key (AUTOGLM_ASSERTION_PUBLIC_KEYS), so it accepts no %s", action)
	}
	if token == "" {
		return nil, "", task.Errorf(task.PermissionDenied, "%s needs an assertion signed by the autoglm server; send it through the API server (break-glass: the direct CLI with AUTOGLM_ASSERTION_PRIVATE_KEY)", action)
	}
	p64, s64, ok := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(s64)
	if !ok || err1 != nil || err2 != nil || len(sig) != ed25519.SignatureSize {
		return nil, "", task.Errorf(task.PermissionDenied, "the %s assertion is malformed", action)
	}
	for _, k := range keys {
		if ed25519.Verify(k, payload, sig) {
			return payload, KeyID(k), nil
		}
	}
	return nil, "", task.Errorf(task.PermissionDenied, "the %s assertion is not signed by a trusted key", action)
}

// Peek reads what a token says without checking its signature: for a
// workflow's update handler, which runs only after the validator has
// verified the same token, and on replay, where the worker's keys may
// have changed since.
func Peek(token string) (Claims, error) {
	p64, _, _ := strings.Cut(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return Claims{}, task.Errorf(task.PermissionDenied, "the actor assertion is malformed")
	}
	return decode(payload)
}

// GenerateKey makes a new key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// EncodePublic and EncodePrivate are the text forms of keys, as the
// environment and key files hold them: base64 (standard, padded).
func EncodePublic(k ed25519.PublicKey) string   { return base64.StdEncoding.EncodeToString(k) }
func EncodePrivate(k ed25519.PrivateKey) string { return base64.StdEncoding.EncodeToString(k.Seed()) }

// ParsePublicKeys reads a comma-separated list of base64 public keys.
func ParsePublicKeys(s string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		b, err := base64.StdEncoding.DecodeString(part)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("assertion: %q is not a base64 ed25519 public key", abbreviate(part))
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out, nil
}

// ParsePrivateKey reads a base64 ed25519 seed (32 bytes) or full private
// key (64 bytes).
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	switch {
	case err != nil:
	case len(b) == ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case len(b) == ed25519.PrivateKeySize:
		return ed25519.PrivateKey(b), nil
	}
	// The message never echoes the value: it is a secret.
	return nil, fmt.Errorf("assertion: the private key is not a base64 ed25519 seed or key")
}

// FromEnv reads NAME, or the file NAME_FILE names.
func FromEnv(name string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	if p := os.Getenv(name + "_FILE"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("assertion: %s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}

// The signed payload is lines of text, not JSON: Verify runs inside the
// workflow's update validators, and a plain split keeps it free of the
// reflection workflowcheck cannot see through. A field holding a newline
// splits into more lines and fails to verify: fail closed. Roles are one
// line, comma-separated; a role is a word of the policy's fixed list.
//
// v1 (no roles) is refused, not read as "no roles": both would refuse every
// update, but only the refusal says why (a server or CLI older than the
// worker). The two are the same binary and an assertion lives two
// minutes, so v1 can only come from a mixed deployment.
//
// v2 (no nonce, no input digest) is refused the same way: it could be
// replayed and its update's reason edited.
const (
	header   = "autoglm-assertion-v3"
	headerV2 = "autoglm-assertion-v2"
	headerV1 = "autoglm-assertion-v1"
)

func (c Claims) encode() []byte {
	var roles []string
	for _, r := range c.Roles {
		// A word that is not a role grants nothing; one holding a comma
		// would otherwise be read back as two roles.
		if slices.Contains(authz.Roles, r) {
			roles = append(roles, string(r))
		}
	}
	return []byte(strings.Join([]string{header, c.Task, c.Action, c.Actor, strings.Join(roles, ","), strconv.FormatInt(c.Expires, 10), c.Nonce, c.Input, c.Key}, "\n"))
}

func decode(b []byte) (Claims, error) {
	malformed := task.Errorf(task.PermissionDenied, "the actor assertion is malformed")
	f := strings.Split(string(b), "\n")
	if len(f) > 0 && f[0] == headerV1 {
		return Claims{}, task.Errorf(task.PermissionDenied, "the actor assertion is of format v1, which carries no roles; the autoglm server or CLI that signed it is older than this worker")
	}
	if len(f) > 0 && f[0] == headerV2 {
		return Claims{}, task.Errorf(task.PermissionDenied, "the actor assertion is of format v2, which carries no nonce; the autoglm server or CLI that signed it is older than this worker")
	}
	if len(f) != 9 || f[0] != header || f[6] == "" {
		return Claims{}, malformed
	}
	exp, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		return Claims{}, malformed
	}
	c := Claims{Task: f[1], Action: f[2], Actor: f[3], Expires: exp, Nonce: f[6], Input: f[7], Key: f[8]}
	if f[4] != "" {
		for _, r := range strings.Split(f[4], ",") {
			// Only the policy's own words, whoever signed.
			if !slices.Contains(authz.Roles, authz.Role(r)) {
				return Claims{}, malformed
			}
			c.Roles = append(c.Roles, authz.Role(r))
		}
	}
	return c, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func abbreviate(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}
