package workflows

import (
	"crypto/ed25519"
	"slices"
	"sync/atomic"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
)

// keys are the public keys whose assertions the workflows accept, and
// breakGlass the operators' keys among them. They come from the worker's
// configuration, never from a workflow's input: a caller who could start
// a workflow could otherwise bring its own key.
var keys, breakGlass atomic.Pointer[[]ed25519.PublicKey]

// SetAssertionKeys sets the API server's keys this process's workflows
// trust. With none (and no break-glass key), every start and every update
// is refused.
func SetAssertionKeys(k []ed25519.PublicKey) {
	c := append([]ed25519.PublicKey(nil), k...)
	keys.Store(&c)
}

// SetBreakGlassKeys sets the operators' break-glass keys: trusted like
// the server's, but one such key can sign any name, so every approval it
// signs counts as the same one person.
func SetBreakGlassKeys(k []ed25519.PublicKey) {
	c := append([]ed25519.PublicKey(nil), k...)
	breakGlass.Store(&c)
}

func load(p *atomic.Pointer[[]ed25519.PublicKey]) []ed25519.PublicKey {
	if k := p.Load(); k != nil {
		return *k
	}
	return nil
}

func trustedKeys() []ed25519.PublicKey {
	return append(slices.Clip(load(&keys)), load(&breakGlass)...)
}

// isBreakGlass tells whether the key named id (assertion.KeyID) is a
// break-glass key. Validators only: the configuration may differ on
// replay.
func isBreakGlass(id string) bool {
	return slices.ContainsFunc(load(&breakGlass), func(k ed25519.PublicKey) bool { return assertion.KeyID(k) == id })
}
