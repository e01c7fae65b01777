package setup

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/operatorservice/v1"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// Options say what `autoglm setup` prepares.
type Options struct {
	Namespace string
	// NamespaceRetention is the retention a namespace setup registers
	// gets; DefaultNamespaceRetention if zero. An existing namespace keeps
	// its own.
	NamespaceRetention time.Duration
	// DynamicConfigFile is the server's dynamic config YAML; empty leaves
	// the dynamic config unchecked (the API cannot read it).
	DynamicConfigFile string
	// Retention is the lifecycle the bucket gets, unless NoLifecycle
	// (AUTOGLM_RETENTION=off, for stores without lifecycle rules).
	Retention   storage.Retention
	NoLifecycle bool
	// BucketPolicyFile, if set, is the bucket policy to set (see
	// BucketPolicy), with S3 the operator's bucket settings.
	BucketPolicyFile string
	S3               storage.Config
}

// Report is what setup did and what is still missing.
type Report struct {
	Namespace string   `json:"namespace"`
	Added     []string `json:"search_attributes_added"`
	Bucket    string   `json:"bucket"`
	Checks    []Check  `json:"checks"`
}

// Missing are the checks that failed.
func (r Report) Missing() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// String is the report as a person reads it.
func (r Report) String() string {
	var b strings.Builder
	for _, c := range r.Checks {
		mark := "ok     "
		switch {
		case !c.OK:
			mark = "MISSING"
		case c.Warning:
			mark = "warn   "
		}
		fmt.Fprintf(&b, "%s %s", mark, c.What)
		if c.Detail != "" {
			fmt.Fprintf(&b, ": %s", c.Detail)
		}
		b.WriteByte('\n')
	}
	if n := len(r.Missing()); n > 0 {
		fmt.Fprintf(&b, "%d item(s) missing", n)
	} else {
		b.WriteString("namespace " + r.Namespace + " and bucket " + r.Bucket + " are ready")
	}
	return b.String()
}

// Run prepares the namespace and the bucket, and checks the dynamic
// config. Each step runs whatever the others did, so the report names
// everything missing at once; run again, it changes nothing.
func Run(ctx context.Context, tc client.Client, store storage.Store, o Options) Report {
	r := Report{Namespace: o.Namespace, Bucket: store.Bucket()}
	r.Checks = append(r.Checks, searchAttributeChecks(ctx, tc, o, &r)...)
	r.Checks = append(r.Checks, bucketChecks(ctx, store, o.Retention, o.NoLifecycle)...)
	if o.BucketPolicyFile != "" {
		r.Checks = append(r.Checks, BucketPolicy(ctx, o.S3, o.BucketPolicyFile))
	}
	if o.DynamicConfigFile == "" {
		r.Checks = append(r.Checks, Check{What: "dynamic config", OK: true, Detail: "not checked (pass --dynamic-config FILE): priority and fairness need matching.useNewMatcher and matching.enableFairness"})
	} else if cs, err := CheckDynamicConfig(o.DynamicConfigFile); err != nil {
		r.Checks = append(r.Checks, Check{What: "dynamic config", Detail: err.Error()})
	} else {
		r.Checks = append(r.Checks, cs...)
	}
	return r
}

// searchAttributeChecks registers the namespace and its search
// attributes, once it is clear they fit SQL visibility's columns.
func searchAttributeChecks(ctx context.Context, tc client.Client, o Options, r *Report) []Check {
	ns := EnsureNamespace(ctx, tc, o.Namespace, cmp.Or(o.NamespaceRetention, DefaultNamespaceRetention))
	out := []Check{ns}
	if !ns.OK {
		return append(out, Check{What: "search attributes", Detail: "not registered: the namespace is not there"})
	}
	have, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: o.Namespace})
	if err != nil {
		return append(out, Check{What: "search attributes", Detail: fmt.Sprintf("listing them: %v", err)})
	}
	cols := ColumnsCheck(have.GetCustomAttributes())
	out = append(out, cols)
	if !cols.OK {
		return append(out, Check{What: "search attributes", Detail: "not registered: they would not fit"})
	}
	added, err := RegisterSearchAttributes(ctx, tc, o.Namespace)
	r.Added = added
	switch {
	case err != nil:
		return append(out, Check{What: "search attributes", Detail: err.Error()})
	case len(added) > 0:
		return append(out, Check{What: "search attributes", OK: true, Detail: "added " + strings.Join(added, ", ")})
	default:
		return append(out, Check{What: "search attributes", OK: true, Detail: "all present"})
	}
}

func bucketChecks(ctx context.Context, store storage.Store, ret storage.Retention, noLifecycle bool) []Check {
	if err := storage.EnsureBucket(ctx, store); err != nil {
		return []Check{{What: "bucket " + store.Bucket() + " with versioning", Detail: err.Error()}}
	}
	out := []Check{{What: "bucket " + store.Bucket() + " with versioning", OK: true}}
	if noLifecycle {
		return append(out, Check{What: "lifecycle rules", OK: true, Detail: "off (AUTOGLM_RETENTION=off): old logs go only through the log archive schedule, and checkpoints stay until removed"})
	}
	if err := storage.ApplyRetention(ctx, store, ret); err != nil {
		return append(out, Check{What: "lifecycle rules", Detail: err.Error()})
	}
	have, err := storage.LifecycleRules(ctx, store)
	if err != nil {
		return append(out, Check{What: "lifecycle rules", Detail: err.Error()})
	}
	byID := map[string]storage.LifecycleRule{}
	for _, h := range have {
		byID[h.ID] = h
	}
	for _, want := range ret.Rules() {
		c := Check{What: "lifecycle rule " + want.ID, OK: byID[want.ID] == want}
		switch {
		case !c.OK && want.AbortMultipartDays > 0:
			c.OK, c.Warning, c.Detail = true, true, "the store does not keep it: incomplete multipart uploads stay until aborted (autoglm resumes its own uploads, and aborts them on failure)"
		case !c.OK:
			c.Detail = fmt.Sprintf("the store kept %+v of %+v", byID[want.ID], want)
		}
		out = append(out, c)
	}
	return out
}
