package assertion

import (
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
)

// FuzzVerify: a token the fuzzer makes up is never accepted (only the
// signer's key makes one), and never panics the validator. A token the
// signer made for (task, action, actor) is accepted for exactly those,
// with roles from the policy's table only; fields holding the format's
// separators cannot be read back as other fields.
func FuzzVerify(f *testing.F) {
	pub, priv, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	keys := []ed25519.PublicKey{pub}
	s := NewSigner(priv)
	now := time.Now()
	f.Add("t1", "approve", "bob", uint8(2), "")
	f.Add("t1", "approve", "bob\nadmin", uint8(1), "a.b")
	f.Add("t1\napprove", "bob", "", uint8(255), s.Sign("t1", "approve", "bob", []authz.Role{authz.Reviewer}, time.Minute))
	f.Add("", "", "", uint8(0), "autoglm-assertion-v2.")
	f.Add("x", "cancel", "al,ice", uint8(16), "YXV0b2dsbS1hc3NlcnRpb24tdjEKdAphCmIKCjE.AAAA")
	f.Fuzz(func(t *testing.T, taskID, action, actor string, roleBits uint8, token string) {
		if _, err := Verify(keys, token, taskID, action, actor, now); err == nil {
			t.Fatalf("a made-up token %q was accepted", token)
		}
		var roles []authz.Role
		for i, r := range authz.Roles {
			if roleBits&(1<<i) != 0 {
				roles = append(roles, r)
			}
		}
		if roleBits&0x80 != 0 {
			roles = append(roles, authz.Role(actor)) // not a role, unless it is one
		}
		signed := s.Sign(taskID, action, actor, roles, time.Minute)
		c, err := Verify(keys, signed, taskID, action, actor, now)
		clean := !strings.ContainsRune(taskID+action+actor, '\n')
		if clean && err != nil {
			t.Fatalf("a signed assertion for (%q, %q, %q) was refused: %v", taskID, action, actor, err)
		}
		if err != nil {
			return
		}
		if c.Task != taskID || c.Action != action || c.Actor != actor {
			t.Fatalf("signed for (%q, %q, %q), read as (%q, %q, %q)", taskID, action, actor, c.Task, c.Action, c.Actor)
		}
		for _, r := range c.Roles {
			if !slices.Contains(authz.Roles, r) || !slices.Contains(roles, r) {
				t.Fatalf("role %q read back from roles %v", r, roles)
			}
		}
		if _, err := Verify(keys, signed, taskID+"x", action, actor, now); err == nil {
			t.Fatal("accepted for another task")
		}
		if _, err := Verify(keys, signed, taskID, action, actor, now.Add(time.Hour)); err == nil {
			t.Fatal("accepted after its expiry")
		}
	})
}
