// Package testenv holds what the integration test packages share in
// setting up the real stack.
package testenv

import (
	"os"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
)

// TrustNewKey makes an assertion key pair and has the workers of this
// process, and the worker processes it starts (they inherit the
// environment), trust it. The tests drive Temporal directly, as an
// operator on the break-glass path does, signing with the key returned.
func TrustNewKey() (*assertion.Signer, error) {
	_, priv, err := assertion.GenerateKey()
	if err != nil {
		return nil, err
	}
	s := assertion.NewSigner(priv)
	os.Setenv("AUTOGLM_ASSERTION_PUBLIC_KEYS", assertion.EncodePublic(s.Public()))
	os.Setenv("AUTOGLM_ASSERTION_PRIVATE_KEY", assertion.EncodePrivate(priv))
	// Never the API server, even if this machine's user ran autoglm login.
	os.Setenv("AUTOGLM_SERVER", "direct")
	return s, nil
}
