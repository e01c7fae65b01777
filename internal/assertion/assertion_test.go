package assertion

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestSignVerify(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	otherPub, otherPriv, _ := GenerateKey()
	now := time.Unix(1_800_000_000, 0)
	s := NewSigner(priv)
	s.Now = func() time.Time { return now }
	roles := []authz.Role{authz.Reviewer, authz.Auditor}
	tok := s.Sign("t1", "approve", "bob", roles, time.Minute)
	keys := []ed25519.PublicKey{otherPub, pub}
	c, err := Verify(keys, tok, "t1", "approve", "bob", now)
	if err != nil {
		t.Fatalf("a good assertion was refused: %v", err)
	}
	if !slices.Equal(c.Roles, roles) || c.Actor != "bob" || c.Task != "t1" {
		t.Fatalf("verified claims %+v, want bob's roles %v on t1", c, roles)
	}
	if c, err := Verify(keys, s.Sign("t1", "approve", "eve", nil, 0), "t1", "approve", "eve", now); err != nil || len(c.Roles) != 0 {
		t.Fatalf("an assertion of no roles: %+v, %v; want verified with no roles", c, err)
	}
	// A role that is not the policy's grants nothing, and cannot smuggle
	// two through the comma that separates them.
	if c, err := Verify(keys, s.Sign("t1", "approve", "bob", []authz.Role{"reviewer,admin"}, 0), "t1", "approve", "bob", now); err != nil || len(c.Roles) != 0 {
		t.Fatalf("an assertion of a role that is no role: %+v, %v; want verified with no roles", c, err)
	}
	forged := NewSigner(otherPriv)
	forged.Now = s.Now
	// The payload of tok with the roles raised to admin, under tok's own
	// signature.
	p64, sig, _ := strings.Cut(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(p64)
	raised := b64([]byte(strings.Replace(string(payload), "reviewer,auditor", "admin", 1))) + "." + sig
	// A well-signed v1 assertion, as a server older than the worker signs.
	v1 := []byte(strings.Join([]string{headerV1, "t1", "approve", "bob", "1800000060"}, "\n"))
	v1tok := b64(v1) + "." + b64(ed25519.Sign(priv, v1))
	results := map[string]error{}
	_, results["other task"] = Verify(keys, tok, "t2", "approve", "bob", now)
	_, results["other action"] = Verify(keys, tok, "t1", "reject", "bob", now)
	_, results["other actor"] = Verify(keys, tok, "t1", "approve", "alice", now)
	_, results["expired"] = Verify(keys, tok, "t1", "approve", "bob", now.Add(2*time.Minute))
	_, results["untrusted"] = Verify([]ed25519.PublicKey{pub}, forged.Sign("t1", "approve", "bob", roles, 0), "t1", "approve", "bob", now)
	_, results["none"] = Verify(keys, "", "t1", "approve", "bob", now)
	_, results["garbage"] = Verify(keys, "abc.def", "t1", "approve", "bob", now)
	_, results["no keys"] = Verify(nil, tok, "t1", "approve", "bob", now)
	_, results["tampered"] = Verify(keys, "x"+tok, "t1", "approve", "bob", now)
	_, results["roles raised"] = Verify(keys, raised, "t1", "approve", "bob", now)
	_, results["v1"] = Verify(keys, v1tok, "t1", "approve", "bob", now)
	for name, err := range results {
		if !errors.Is(err, task.ErrPermissionDenied) {
			t.Errorf("%s: got %v, want PermissionDenied", name, err)
		}
	}
	if err := results["v1"]; err == nil || !strings.Contains(err.Error(), "v1") {
		t.Errorf("a v1 assertion must be refused saying so: %v", err)
	}
}

func TestKeyText(t *testing.T) {
	pub, priv, _ := GenerateKey()
	got, err := ParsePrivateKey(EncodePrivate(priv))
	if err != nil || !got.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	keys, err := ParsePublicKeys(EncodePublic(pub) + "," + EncodePublic(pub))
	if err != nil || len(keys) != 2 || !keys[0].Equal(pub) {
		t.Fatalf("public keys round trip: %v %d", err, len(keys))
	}
	if _, err := ParsePublicKeys("not-a-key"); err == nil {
		t.Fatal("a bad public key was accepted")
	}
}
