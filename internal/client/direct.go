package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// Direct is Client on the operators' break-glass path: Temporal and the
// bucket themselves, acting as User, vouched for by the operator's
// signing key (Tasks.Signer).
type Direct struct {
	Tasks *taskclient.Client
	// User acts; Tenant is the default tenant of submit.
	User, Tenant string
	// Policy says which tenants User may list and read the usage of.
	Policy *authz.Source
	// ErrNoUser is returned when User is empty: the CLI says how to give
	// one.
	ErrNoUser error
}

func (d Direct) user() error {
	if d.User == "" {
		return d.ErrNoUser
	}
	return nil
}

// tenants are the tenants User has a role in, or just tenant if User has
// one there.
func (d Direct) tenants(tenant string) ([]string, error) {
	p, err := d.Policy.Current()
	if err != nil {
		return nil, err
	}
	ts := p.TenantsOf(d.User)
	if len(ts) == 0 {
		return nil, task.Errorf(task.PermissionDenied, "%s has no role in any tenant", d.User)
	}
	if tenant == "" {
		return ts, nil
	}
	if !slices.Contains(ts, tenant) {
		return nil, task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", d.User, tenant)
	}
	return []string{tenant}, nil
}

// Submit implements Client.
func (d Direct) Submit(ctx context.Context, r SubmitRequest) (Submitted, error) {
	if err := d.user(); err != nil {
		return Submitted{}, err
	}
	if r.Tenant == "" {
		r.Tenant = d.Tenant
	}
	r.Submitter = d.User
	in, err := d.Tasks.Submit(ctx, r)
	if err != nil && (r.File != "" || len(r.Attach) > 0) && r.ID == "" && task.TypeOf(err) == "" {
		// Uploads resume only under the same task ID.
		return Submitted{}, fmt.Errorf("%w\nto resume the upload, run the same command with --id %s", err, in.ID)
	}
	return Submitted{ID: in.ID, Tenant: in.Tenant, Submitter: in.Submitter, Model: in.Model, Kind: in.Kind, Priority: in.Priority}, err
}

// Status implements Client.
func (d Direct) Status(ctx context.Context, id string) (Status, error) {
	st, err := d.Tasks.Status(ctx, id)
	return Status{Status: st}, err
}

// watchEvery is how often Watch asks the workflow for its status.
const watchEvery = 500 * time.Millisecond

// Watch implements Client, by the status query.
func (d Direct) Watch(ctx context.Context, id string, seen func(Change)) (Status, error) {
	audit := 0
	var last task.Counts
	step := 0
	for {
		st, err := d.Tasks.Status(ctx, id)
		if err != nil {
			return Status{}, err
		}
		moved := st.Progress.Total > 0 && st.Progress.Counts != last
		showProgress := func() {
			last = st.Progress.Counts
			p := st.Progress
			seen(Change{Progress: &p})
		}
		// A run that stopped between two polls closes its bar on the
		// counts it stopped with, before the transitions that stopped it.
		if moved && last.Total > 0 && st.State != task.Running {
			showProgress()
		}
		audit = newTransitions(st, audit, seen)
		if moved && st.State == task.Running {
			showProgress()
		}
		if ft := st.FineTune; st.State == task.Running && ft != nil && ft.Step != step {
			step = ft.Step
			seen(Change{Training: ft})
		}
		if st.State.Final() {
			return Status{Status: st}, nil
		}
		if !pause(ctx, watchEvery) {
			return Status{}, ctx.Err()
		}
	}
}

// Decide implements Client.
func (d Direct) Decide(ctx context.Context, id, action string, dec Decision) (Status, error) {
	if err := d.user(); err != nil {
		return Status{}, err
	}
	st, err := d.Tasks.Decide(ctx, id, action, task.DecisionRequest{Actor: d.User, Reason: dec.Reason, Priority: dec.Priority})
	return Status{Status: st}, err
}

// List implements Client.
func (d Direct) List(ctx context.Context, r ListRequest) ([]taskclient.Summary, error) {
	if err := d.user(); err != nil {
		return nil, err
	}
	ts, err := d.tenants(r.Tenant)
	if err != nil {
		return nil, err
	}
	r.Tenants = ts
	out, err := d.Tasks.List(ctx, r.ListRequest)
	if out == nil {
		out = []taskclient.Summary{}
	}
	return out, err
}

// Resubmit implements Client.
func (d Direct) Resubmit(ctx context.Context, id string, which taskclient.Items) (taskclient.Resubmitted, error) {
	if err := d.user(); err != nil {
		return taskclient.Resubmitted{}, err
	}
	res, err := d.Tasks.Resubmit(ctx, id, d.User, which)
	res.Task.Prompt = ""
	return res, err
}

// Results implements Client.
func (d Direct) Results(ctx context.Context, id, dir string, partial bool) ([]string, error) {
	st, err := d.Tasks.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := taskclient.CheckFinished(st, partial); err != nil {
		return nil, err
	}
	refs, err := d.Tasks.Artifacts(ctx, st)
	if err != nil {
		return nil, err
	}
	files, err := taskclient.LocalPaths(dir, refs)
	if err != nil {
		return nil, err
	}
	for i, ref := range refs {
		if err := os.MkdirAll(filepath.Dir(files[i]), 0o755); err != nil {
			return nil, err
		}
		f, err := os.Create(files[i])
		if err != nil {
			return nil, err
		}
		err = d.Tasks.Download(ctx, ref, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(files[i])
			return nil, err
		}
	}
	return files, nil
}

// Answer implements Client.
func (d Direct) Answer(ctx context.Context, st Status) (json.RawMessage, error) {
	for _, name := range []string{"output.jsonl", "errors.jsonl"} {
		for _, ref := range st.Artifacts {
			if filepath.Base(ref.Key) != name || ref.Size == 0 {
				continue
			}
			rc, _, err := d.Tasks.Store.Get(ctx, ref.Key)
			if err != nil {
				return nil, err
			}
			line, err := firstLine(bufio.NewReader(rc))
			rc.Close()
			return line, err
		}
	}
	return nil, task.Errorf(task.NotFound, "task %s has no output", st.ID)
}

// Usage implements Client, from the usage ledger in the bucket.
func (d Direct) Usage(ctx context.Context, r UsageRequest) ([]usage.Row, error) {
	if err := d.user(); err != nil {
		return nil, err
	}
	ts, err := d.tenants(r.Tenant)
	if err != nil {
		return nil, err
	}
	until := r.Until
	if until.IsZero() {
		until = time.Now()
	}
	since := r.Since
	if since.IsZero() {
		since = until.AddDate(0, 0, -(DefaultUsageDays - 1))
	}
	var recs []usage.Record
	for _, t := range ts {
		rs, err := usage.Read(ctx, d.Tasks.Store, t, since, until)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rs...)
	}
	return usage.Rows(recs), nil
}

// Attach implements Client: User must be allowed to submit for the
// task's submitter in its tenant, as the policy has it now.
func (d Direct) Attach(ctx context.Context, id string, paths []string, o taskclient.AttachOptions) ([]taskclient.Attachment, error) {
	if err := d.user(); err != nil {
		return nil, err
	}
	st, err := d.Tasks.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	p, err := d.Policy.Current()
	if err != nil {
		return nil, err
	}
	if err := p.Check(st.Tenant, d.User, authz.Submit, st.Submitter); err != nil {
		return nil, err
	}
	return d.Tasks.Attach(ctx, st.Tenant, st.ID, paths, o)
}
