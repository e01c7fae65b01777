package workflows

import (
	"slices"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
)

// nonces are the update assertions a task has taken, each until it
// expires (with assertion.Leeway): a copy of one, read from the history,
// is refused while it could still verify, and forgotten after, so the
// set stays as small as the last few minutes' updates.
type nonces map[string]int64 // nonce -> expiry, Unix seconds

// usedNonce is one entry of nonces as a continued run carries it.
type usedNonce struct {
	Nonce   string `json:"n"`
	Expires int64  `json:"exp"`
}

func (n nonces) used(nonce string) bool {
	_, ok := n[nonce]
	return ok
}

func (n *nonces) use(nonce string, expires int64) {
	if nonce == "" {
		return
	}
	if *n == nil {
		*n = nonces{}
	}
	(*n)[nonce] = expires
}

// live are the nonces still able to verify at now, in a stable order
// (the carried input must be the same bytes on every replay).
func (n nonces) live(now time.Time) []usedNonce {
	var out []usedNonce
	for k, exp := range n { //workflowcheck:ignore the result is sorted below
		if now.Add(-assertion.Leeway).Unix() <= exp {
			out = append(out, usedNonce{Nonce: k, Expires: exp})
		}
	}
	slices.SortFunc(out, func(a, b usedNonce) int { return strings.Compare(a.Nonce, b.Nonce) })
	return out
}

func restoreNonces(carried []usedNonce) nonces {
	n := nonces{}
	for _, u := range carried {
		n[u.Nonce] = u.Expires
	}
	return n
}
