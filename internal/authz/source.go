package authz

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Source hands out the current policy of a file and reloads it when the
// file changes, so the worker picks up policy edits without a restart.
type Source struct {
	path string

	mu      sync.Mutex
	policy  *Policy
	modTime time.Time
	size    int64
}

// Load reads the policy file once; later calls to Current re-read it when
// its modification time or size changes.
func Load(path string) (*Source, error) {
	s := &Source{path: path}
	if _, err := s.Current(); err != nil {
		return nil, err
	}
	return s, nil
}

// FromEnv is the policy the worker reads: the file AUTOGLM_POLICY_FILE
// names, or the embedded default.
func FromEnv() (*Source, error) {
	if path := os.Getenv("AUTOGLM_POLICY_FILE"); path != "" {
		return Load(path)
	}
	return Static(Default()), nil
}

// Static is a Source that always returns p (for tests and embedded
// defaults).
func Static(p *Policy) *Source { return &Source{policy: p} }

// Current is the policy as the file says now. A file that became invalid
// or vanished leaves the last good policy in force: a typo in an edit must
// not stop every task.
func (s *Source) Current() (*Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return s.policy, nil
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return s.fallback(fmt.Errorf("authz: %w", err))
	}
	if s.policy != nil && fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return s.policy, nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return s.fallback(fmt.Errorf("authz: %w", err))
	}
	p, err := Parse(b)
	if err != nil {
		return s.fallback(fmt.Errorf("%w (in %s)", err, s.path))
	}
	s.policy, s.modTime, s.size = p, fi.ModTime(), fi.Size()
	return p, nil
}

func (s *Source) fallback(err error) (*Policy, error) {
	if s.policy == nil {
		return nil, err
	}
	return s.policy, nil
}
