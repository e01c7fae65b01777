package authz

import (
	"slices"
	"strings"
	"time"
)

// AccessRules screen requests to bring a new model in (`autoglm models
// request`): where it may come from, under which licence, how large, and
// whether pickled weights (which can run code when loaded) are tolerated.
type AccessRules struct {
	// Upstreams are the repo owners (or owner/name) models may come from;
	// empty allows none.
	Upstreams []string `yaml:"upstreams"`
	// Licences are the licence ids allowed (apache-2.0, mit…); empty
	// allows none.
	Licences []string `yaml:"licences"`
	// MaxBytes bounds a model's files in all; 0 is no bound.
	MaxBytes int64 `yaml:"max_bytes"`
	// AllowPickle lets .bin/.pt/.pkl/.ckpt weights through the audit.
	AllowPickle bool `yaml:"allow_pickle"`
	// ApprovalDeadline expires a request nobody decided on (default 72h),
	// as a tenant's approval_deadline does a task.
	ApprovalDeadline time.Duration `yaml:"approval_deadline"`
	// DeprecatedReviewDeadline is approval_deadline's former name, read
	// when approval_deadline is unset.
	DeprecatedReviewDeadline time.Duration `yaml:"review_deadline"`
}

// AllowsUpstream tells whether the repo's owner (or the repo) is listed.
func (r AccessRules) AllowsUpstream(repo string) bool {
	owner, _, _ := strings.Cut(repo, "/")
	return slices.Contains(r.Upstreams, owner) || slices.Contains(r.Upstreams, repo) || slices.Contains(r.Upstreams, "*")
}

// AllowsLicence tells whether the licence is listed.
func (r AccessRules) AllowsLicence(licence string) bool {
	return licence != "" && (slices.Contains(r.Licences, strings.ToLower(licence)) || slices.Contains(r.Licences, "*"))
}
