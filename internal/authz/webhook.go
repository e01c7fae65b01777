package authz

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/webhook"
)

// Webhook is one subscriber to a tenant's events, delivered in the
// Standard Webhooks format. The signing secret (whsec_…) is never in the
// policy itself: it names the environment variable or file that holds it.
type Webhook struct {
	// Name identifies the subscriber in the audit trail (its URL may hold
	// a token, so it is not logged).
	Name       string `yaml:"name"`
	URL        string `yaml:"url"`
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
	// Events are the event types sent; empty is all.
	Events []string `yaml:"events"`
	// AllowLoopback lets the subscriber be on the worker's own machine
	// (a loopback address, over http too): for development only.
	// Otherwise the URL is https and its addresses must be public (see
	// internal/webhook).
	AllowLoopback bool `yaml:"allow_loopback"`
}

// check refuses a subscriber whose URL no delivery could go to, when the
// policy is read rather than at the first event.
func (w Webhook) check(tenant string) error {
	if _, err := webhook.CheckURL(w.URL, w.AllowLoopback); err != nil {
		return fmt.Errorf("authz: policy: tenant %s webhook %s: %w", tenant, w.Name, err)
	}
	return nil
}

// Wants tells whether the subscriber takes events of this type.
func (w Webhook) Wants(eventType string) bool {
	return len(w.Events) == 0 || slices.Contains(w.Events, eventType)
}

// Secret reads the signing secret from where the policy says it is.
func (w Webhook) Secret() (string, error) {
	var s string
	switch {
	case w.SecretEnv != "":
		s = os.Getenv(w.SecretEnv)
	case w.SecretFile != "":
		b, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return "", fmt.Errorf("webhook %s: secret_file: %w", w.Name, err)
		}
		s = strings.TrimSpace(string(b))
	}
	if !strings.HasPrefix(s, "whsec_") {
		return "", task.Errorf(task.InvalidInput, "webhook %s: no whsec_ signing secret in %s%s", w.Name, w.SecretEnv, w.SecretFile)
	}
	return s, nil
}

// Webhook finds a tenant's subscriber by name.
func (t Tenant) Webhook(name string) (Webhook, bool) {
	for _, w := range t.Webhooks {
		if w.Name == name {
			return w, true
		}
	}
	return Webhook{}, false
}
