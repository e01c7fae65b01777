package assertion

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

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
	tok := s.Sign("t1", "approve", "bob", time.Minute)
	keys := []ed25519.PublicKey{otherPub, pub}
	if err := Verify(keys, tok, "t1", "approve", "bob", now); err != nil {
		t.Fatalf("a good assertion was refused: %v", err)
	}
	forged := NewSigner(otherPriv)
	forged.Now = s.Now
	cases := map[string]error{
		"other task":   Verify(keys, tok, "t2", "approve", "bob", now),
		"other action": Verify(keys, tok, "t1", "reject", "bob", now),
		"other actor":  Verify(keys, tok, "t1", "approve", "alice", now),
		"expired":      Verify(keys, tok, "t1", "approve", "bob", now.Add(2*time.Minute)),
		"untrusted":    Verify([]ed25519.PublicKey{pub}, forged.Sign("t1", "approve", "bob", 0), "t1", "approve", "bob", now),
		"none":         Verify(keys, "", "t1", "approve", "bob", now),
		"garbage":      Verify(keys, "abc.def", "t1", "approve", "bob", now),
		"no keys":      Verify(nil, tok, "t1", "approve", "bob", now),
		"tampered":     Verify(keys, "x"+tok, "t1", "approve", "bob", now),
	}
	for name, err := range cases {
		if !errors.Is(err, task.ErrPermissionDenied) {
			t.Errorf("%s: got %v, want PermissionDenied", name, err)
		}
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
