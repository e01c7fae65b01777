package authz

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// APIKey is one key of the API server. Only its sha256 is kept: a key is
// 32 random bytes, so a plain hash cannot be guessed back, and a leaked
// policy file leaks no key.
type APIKey struct {
	// SHA256 is the hex sha256 of the whole key text.
	SHA256 string `yaml:"sha256"`
	// User is who the key authenticates: the actor of everything done
	// with it.
	User string `yaml:"user"`
	// Tenant is the key's tenant where a request names none (the OpenAI
	// API has no tenant parameter).
	Tenant string `yaml:"tenant"`
	// Name says what the key is for, for the people who read the policy.
	Name string `yaml:"name,omitempty"`
}

// KeyPrefix starts every API key, so a key found in a log or a commit is
// recognisable.
const KeyPrefix = "agk_"

// NewAPIKey makes a key for user in tenant: the key text, to be shown once,
// and its policy entry.
func NewAPIKey(user, tenant, name string) (string, APIKey, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", APIKey{}, err
	}
	key := KeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, APIKey{SHA256: HashKey(key), User: user, Tenant: tenant, Name: name}, nil
}

// HashKey is the hex sha256 of key, as the policy stores it.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// LookupKey is the entry of key, by its hash; false if none.
func (p *Policy) LookupKey(key string) (APIKey, bool) {
	h := HashKey(key)
	for _, k := range p.APIKeys {
		if k.SHA256 == h {
			return k, true
		}
	}
	return APIKey{}, false
}

func (p *Policy) checkKeys() error {
	seen := map[string]bool{}
	for i, k := range p.APIKeys {
		k.SHA256 = strings.ToLower(k.SHA256)
		if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("authz: policy: api_keys[%d]: sha256 is not 64 hex digits", i)
		}
		if k.User == "" {
			return fmt.Errorf("authz: policy: api_keys[%d]: no user", i)
		}
		if seen[k.SHA256] {
			return fmt.Errorf("authz: policy: api_keys[%d]: the same key twice", i)
		}
		seen[k.SHA256] = true
		p.APIKeys[i] = k
	}
	return nil
}
