package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Retention says how many days the objects of each category are kept
// before S3 expires them. Categories it does not name are kept until
// someone deletes them: outputs, attachments and reports are the point of
// a task.
type Retention struct {
	// Days per category; 0 or absent keeps the category.
	Days map[Category]int
	// NoncurrentDays is how long a version stays after it was replaced or
	// deleted, in the categories that expire (the bucket is versioned, so
	// without it an expired object's bytes would stay forever); 0 is 1 day.
	NoncurrentDays int
	// NodeRecordDays expires the node records (fleet/nodes/) of nodes that
	// stopped announcing themselves; a live node rewrites its record every
	// few seconds, so it never ages. 0 keeps them.
	NodeRecordDays int
	// AbortMultipartDays aborts multipart uploads left incomplete this long
	// (their parts are billed and invisible); 0 leaves them. A store that
	// refuses the rule gets the others (see ApplyRetention).
	AbortMultipartDays int
}

// Default retention: task logs 90 days, checkpoints 30 days. A checkpoint
// is written while its task runs, so it outlives the task by about 30 days;
// an object's age is all S3 lifecycle rules can count from.
const (
	DefaultLogDays            = 90
	DefaultCheckpointDays     = 30
	DefaultNodeRecordDays     = 7
	DefaultAbortMultipartDays = 7
)

// DefaultRetention is the retention the worker applies unless configured.
func DefaultRetention() Retention {
	return Retention{
		Days:           map[Category]int{Log: DefaultLogDays, Checkpoint: DefaultCheckpointDays},
		NodeRecordDays: DefaultNodeRecordDays, AbortMultipartDays: DefaultAbortMultipartDays,
	}
}

// TagKind is the object tag that marks what autoglm-flow wrote for its own
// reasons inside a sniffed category, so that lifecycle rules can select it:
// TagKind=log marks a log archive (which lives in the archive category,
// beside uploaded zips that must not expire). Log retention applies to it.
const (
	TagKind    = "autoglm-kind"
	KindLogArc = "log"
)

// RulePrefix starts the ID of every lifecycle rule autoglm-flow writes;
// ApplyRetention replaces these and leaves other rules alone.
const RulePrefix = "autoglm-"

// LifecycleRule is one lifecycle rule of the bucket as ApplyRetention
// writes it and LifecycleRules reads it back.
type LifecycleRule struct {
	ID string
	// Prefix selects the objects under it; empty with a tag.
	Prefix string
	// TagKey and TagValue select the objects with that tag.
	TagKey, TagValue string
	// Days: current versions expire (get a delete marker) this many days
	// after they were written.
	Days int
	// NoncurrentDays: older versions are removed this many days after a
	// newer one replaced them.
	NoncurrentDays int
	// AbortMultipartDays: incomplete multipart uploads are aborted this many
	// days after they began.
	AbortMultipartDays int
	Enabled            bool
}

// lifecycler is what a driver does for lifecycle rules. replaceRules
// drops the bucket's rules whose ID starts with RulePrefix, keeps the
// others as they are (whatever they hold) and adds rules.
type lifecycler interface {
	replaceRules(ctx context.Context, rules []LifecycleRule) error
	lifecycleRules(ctx context.Context) ([]LifecycleRule, error)
}

// Rules are the lifecycle rules that carry out r, in a stable order.
func (r Retention) Rules() []LifecycleRule {
	nc := r.NoncurrentDays
	if nc <= 0 {
		nc = 1
	}
	var rules []LifecycleRule
	for _, c := range Categories {
		days := r.Days[c]
		if days <= 0 {
			continue
		}
		rules = append(rules, LifecycleRule{
			ID: RulePrefix + string(c), Prefix: string(c) + "/", Days: days, NoncurrentDays: nc, Enabled: true,
		})
		if c == Log {
			rules = append(rules, LifecycleRule{
				ID: RulePrefix + "log-archive", TagKey: TagKind, TagValue: KindLogArc, Days: days, NoncurrentDays: nc, Enabled: true,
			})
		}
	}
	if r.NodeRecordDays > 0 {
		rules = append(rules, LifecycleRule{ID: RulePrefix + "fleet-nodes", Prefix: NodeRecordPrefix, Days: r.NodeRecordDays, NoncurrentDays: nc, Enabled: true})
	}
	if r.AbortMultipartDays > 0 {
		rules = append(rules, LifecycleRule{ID: RulePrefix + "abort-multipart", AbortMultipartDays: r.AbortMultipartDays, Enabled: true})
	}
	return rules
}

// NodeRecordPrefix is where the nodes of the fleet keep their records.
const NodeRecordPrefix = "fleet/nodes/"

// ApplyRetention writes r's lifecycle rules to s's bucket, replacing the
// rules an earlier call wrote and keeping any others. It needs the right
// to configure the bucket (s3:PutLifecycleConfiguration); both drivers
// support it.
func ApplyRetention(ctx context.Context, s Store, r Retention) error {
	for c, d := range r.Days {
		if !c.Valid() {
			return fmt.Errorf("storage: retention for unknown category %q", c)
		}
		if d < 0 {
			return fmt.Errorf("storage: retention of %s is %d days", c, d)
		}
	}
	l, ok := s.(lifecycler)
	if !ok {
		return fmt.Errorf("storage: %T cannot set lifecycle rules", s)
	}
	rules := r.Rules()
	err := l.replaceRules(ctx, rules)
	if err != nil && r.AbortMultipartDays > 0 {
		// Some stores (the pinned MinIO) refuse a rule whose only action is
		// to abort uploads: keep the expirations rather than lose them all.
		// LifecycleRules then shows the abort rule missing.
		err = l.replaceRules(ctx, slices.DeleteFunc(rules, func(lr LifecycleRule) bool { return lr.AbortMultipartDays > 0 }))
	}
	if err != nil {
		return fmt.Errorf("storage: lifecycle rules of %s: %w", s.Bucket(), err)
	}
	return nil
}

// LifecycleRules reads the bucket's lifecycle rules back, sorted by ID;
// none is not an error.
func LifecycleRules(ctx context.Context, s Store) ([]LifecycleRule, error) {
	l, ok := s.(lifecycler)
	if !ok {
		return nil, fmt.Errorf("storage: %T cannot read lifecycle rules", s)
	}
	rules, err := l.lifecycleRules(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: lifecycle rules of %s: %w", s.Bucket(), err)
	}
	slices.SortFunc(rules, func(a, b LifecycleRule) int { return strings.Compare(a.ID, b.ID) })
	return rules, nil
}

// ours reports whether a rule ID is one ApplyRetention manages.
func ours(id string) bool { return strings.HasPrefix(id, RulePrefix) }
