package workflows

import (
	"crypto/ed25519"
	"sync/atomic"
)

// keys are the public keys whose actor assertions the update validators
// accept. They come from the worker's configuration, never from a
// workflow's input: a caller who could start a workflow could otherwise
// bring its own key.
var keys atomic.Pointer[[]ed25519.PublicKey]

// SetAssertionKeys sets the keys this process's workflows trust (the API
// server's, and an operator's break-glass key). With none, every update
// is refused.
func SetAssertionKeys(k []ed25519.PublicKey) {
	c := append([]ed25519.PublicKey(nil), k...)
	keys.Store(&c)
}

func trustedKeys() []ed25519.PublicKey {
	if k := keys.Load(); k != nil {
		return *k
	}
	return nil
}
