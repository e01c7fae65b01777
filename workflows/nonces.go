package workflows

import (
	"slices"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
)

// nonces are the update assertions a task has taken, each until it
// expires (with assertion.Leeway): a copy of one, read from the history,
// is refused while it could still verify, and forgotten after, so the
// set stays as small as the last few minutes' updates. In the order the
// updates came, which every replay repeats.
type nonces []usedNonce

// usedNonce is one taken assertion's nonce and expiry (Unix seconds).
type usedNonce struct {
	Nonce   string `json:"n"`
	Expires int64  `json:"exp"`
}

func (n nonces) used(nonce string) bool {
	return slices.ContainsFunc(n, func(u usedNonce) bool { return u.Nonce == nonce })
}

// use remembers nonce, and forgets those that can no longer verify at
// now.
func (n *nonces) use(nonce string, expires int64, now time.Time) {
	*n = n.live(now)
	if nonce != "" {
		*n = append(*n, usedNonce{Nonce: nonce, Expires: expires})
	}
}

// live are the nonces still able to verify at now.
func (n nonces) live(now time.Time) nonces {
	return slices.DeleteFunc(slices.Clone(n), func(u usedNonce) bool { return now.Add(-assertion.Leeway).Unix() > u.Expires })
}
