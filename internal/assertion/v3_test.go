package assertion

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// An assertion covers the update's input, carries a fresh nonce and the
// signer's key, and is taken a little past its expiry, not more.
func TestInputNonceKeyAndLeeway(t *testing.T) {
	pub, priv, _ := GenerateKey()
	now := time.Unix(1_800_000_000, 0)
	s := NewSigner(priv)
	s.Now = func() time.Time { return now }
	keys := []ed25519.PublicKey{pub}
	tok := s.SignInput("t1", "set-priority", "olga", []authz.Role{authz.Operator}, "digest-a", time.Minute)
	c, err := VerifyInput(keys, tok, "t1", "set-priority", "olga", "digest-a", now)
	if err != nil || c.Nonce == "" || c.Key != KeyID(pub) {
		t.Fatalf("claims %+v, %v; want verified with a nonce and key %s", c, err, KeyID(pub))
	}
	if again := s.SignInput("t1", "set-priority", "olga", nil, "digest-a", time.Minute); strings.Contains(again, strings.Split(tok, ".")[0]) {
		t.Error("two assertions of the same update are the same bytes; want a fresh nonce each")
	}
	if p, err := Peek(tok); err != nil || p.Nonce != c.Nonce || p.Key != c.Key {
		t.Errorf("Peek read %+v, %v; want the verified claims' nonce and key", p, err)
	}
	if _, err := VerifyInput(keys, tok, "t1", "set-priority", "olga", "digest-b", now); !errors.Is(err, task.ErrPermissionDenied) || !strings.Contains(err.Error(), "signed over another input") {
		t.Errorf("another input: %v; want PermissionDenied (another input)", err)
	}
	if _, err := VerifyInput(keys, tok, "t1", "set-priority", "olga", "digest-a", now.Add(time.Minute+Leeway)); err != nil {
		t.Errorf("inside the leeway: %v; want verified", err)
	}
	if _, err := VerifyInput(keys, tok, "t1", "set-priority", "olga", "digest-a", now.Add(time.Minute+Leeway+time.Second)); !errors.Is(err, task.ErrPermissionDenied) {
		t.Errorf("past the leeway: %v; want PermissionDenied", err)
	}
	// A payload naming another key than the one that signed it.
	lying := Claims{Task: "t1", Action: "approve", Actor: "bob", Expires: now.Add(time.Minute).Unix(), Nonce: "n", Key: "ed25519:0000000000000000"}.encode()
	if _, err := Verify(keys, s.seal(lying), "t1", "approve", "bob", now); !errors.Is(err, task.ErrPermissionDenied) || !strings.Contains(err.Error(), "names key") {
		t.Errorf("a payload naming another key: %v; want PermissionDenied", err)
	}
	v2 := []byte(strings.Join([]string{headerV2, "t1", "approve", "bob", "", "1800000060"}, "\n"))
	if _, err := Verify(keys, s.seal(v2), "t1", "approve", "bob", now); err == nil || !strings.Contains(err.Error(), "v2") {
		t.Errorf("a v2 assertion: %v; want refused saying v2", err)
	}
}

// A start assertion binds the task's ID, tenant, submitter, kind and
// input, and expires.
func TestStartAssertion(t *testing.T) {
	pub, priv, _ := GenerateKey()
	now := time.Unix(1_800_000_000, 0)
	s := NewSigner(priv)
	s.Now = func() time.Time { return now }
	keys := []ed25519.PublicKey{pub}
	in := task.Input{ID: "t1", Tenant: "demo", Submitter: "alice", Kind: task.KindBatch, Source: task.ObjectRef{Key: "data/ab/demo/t1/input.jsonl", SHA256: "abc"}}
	tok := s.SignStart(StartOf(in), 0)
	st, err := VerifyStart(keys, tok, StartOf(in), now)
	if err != nil || st.Key != KeyID(pub) || st.Nonce == "" {
		t.Fatalf("start %+v, %v; want verified", st, err)
	}
	other := in
	other.Submitter = "bob"
	if _, err := VerifyStart(keys, tok, StartOf(other), now); !errors.Is(err, task.ErrPermissionDenied) {
		t.Errorf("another submitter: %v; want PermissionDenied", err)
	}
	if _, err := VerifyStart(keys, tok, StartOf(in), now.Add(DefaultTTL+Leeway+time.Second)); !errors.Is(err, task.ErrPermissionDenied) {
		t.Errorf("expired: %v; want PermissionDenied", err)
	}
	// An update assertion is no start assertion.
	if _, err := VerifyStart(keys, s.Sign("t1", "approve", "alice", nil, 0), StartOf(in), now); !errors.Is(err, task.ErrPermissionDenied) {
		t.Errorf("an update assertion as a start: %v; want PermissionDenied", err)
	}
	if _, err := VerifyStart(keys, "", StartOf(in), now); !errors.Is(err, task.ErrPermissionDenied) {
		t.Errorf("no start assertion: %v; want PermissionDenied", err)
	}
}

// A fine-tuning start also binds the validation file and the
// hyperparameters, seed and suffix: a start that swaps any of them is
// refused, saying what was signed and what was sent.
func TestStartAssertionCoversFineTuning(t *testing.T) {
	pub, priv, _ := GenerateKey()
	now := time.Unix(1_800_000_000, 0)
	s := NewSigner(priv)
	s.Now = func() time.Time { return now }
	keys := []ed25519.PublicKey{pub}
	in := task.Input{ID: "t1", Tenant: "demo", Submitter: "alice", Kind: task.KindFineTune,
		Source: task.ObjectRef{Key: "data/ab/demo/t1/training.jsonl", SHA256: "abc"},
		FineTune: &task.FineTune{ValidationFile: &task.ObjectRef{Key: "data/ab/demo/t1/validation.jsonl", SHA256: "def"},
			Hyperparameters: task.Hyperparameters{NEpochs: task.Number(2)}, Seed: 7, Suffix: "s"}}
	tok := s.SignStart(StartOf(in), 0)
	if _, err := VerifyStart(keys, tok, StartOf(in), now); err != nil {
		t.Fatalf("the signed start: %v; want verified", err)
	}
	swap := func(f func(*task.FineTune)) task.Input {
		out, ft := in, *in.FineTune
		f(&ft)
		out.FineTune = &ft
		return out
	}
	for name, forged := range map[string]task.Input{
		"another validation file": swap(func(ft *task.FineTune) {
			ft.ValidationFile = &task.ObjectRef{Key: "data/ab/demo/t1/validation.jsonl", SHA256: "bad"}
		}),
		"no validation file": swap(func(ft *task.FineTune) { ft.ValidationFile = nil }),
		"other epochs":       swap(func(ft *task.FineTune) { ft.Hyperparameters.NEpochs = task.Number(50) }),
		"epochs auto":        swap(func(ft *task.FineTune) { ft.Hyperparameters.NEpochs = task.Auto{} }),
		"another seed":       swap(func(ft *task.FineTune) { ft.Seed = 8 }),
	} {
		_, err := VerifyStart(keys, tok, StartOf(forged), now)
		if !errors.Is(err, task.ErrPermissionDenied) || !strings.Contains(err.Error(), "validation data/ab/demo/t1/validation.jsonl sha256 def, hyperparameters "+FineTuneDigest(*in.FineTune)[:16]+"), not this start") {
			t.Errorf("%s: %v; want PermissionDenied naming the signed validation file and hyperparameters", name, err)
		}
	}
	// A batch's start (v1, no fine-tuning fields) does not start the
	// fine-tuning task of the same ID and file.
	batch := in
	batch.FineTune = nil
	if _, err := VerifyStart(keys, s.SignStart(StartOf(batch), 0), StartOf(in), now); !errors.Is(err, task.ErrPermissionDenied) {
		t.Errorf("a start without the fine-tuning fields: %v; want PermissionDenied", err)
	}
}
