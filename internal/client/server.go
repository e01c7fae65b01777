package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// Server is Client through `autoglm server`: the caller is who the API key
// says.
type Server struct {
	API *apiclient.Client
}

// Submit implements Client.
func (s Server) Submit(ctx context.Context, r SubmitRequest) (Submitted, error) {
	return s.API.Submit(ctx, r, nil)
}

// Status implements Client.
func (s Server) Status(ctx context.Context, id string) (Status, error) {
	return s.API.Status(ctx, id)
}

// statusWait bounds the one status read at the end of Watch: the status
// needs a worker to answer, the changes do not, so a busy worker only
// costs the full report, never the watch.
const statusWait = 5 * time.Second

// Watch follows the task's changes on the server: what the Temporal server already
// knows, with the audit trail the server reads once per state change for
// every watcher, so watching asks no worker anything. Only the final
// status, for the full report, is read at the end.
func (s Server) Watch(ctx context.Context, id string, seen func(Change)) (Status, error) {
	var after int64
	audit := 0
	var last task.State // the state of the newest line shown
	shown := seen
	seen = func(u Change) {
		if u.Transition != nil {
			last = u.Transition.To
		}
		shown(u)
	}
	var res *task.Result
	for res == nil {
		cs, err := s.API.Changes(ctx, id, after, 30*time.Second)
		if err != nil {
			if task.TypeOf(err) != "" || ctx.Err() != nil {
				return Status{}, err
			}
			// The server restarting: ask again.
			if !pause(ctx, time.Second) {
				return Status{}, ctx.Err()
			}
			continue
		}
		for _, e := range cs.Changes {
			after = e.Seq
			// A change's progress is what the counts were when its
			// transitions happened: the bar shows them before it closes.
			if e.Progress != nil {
				seen(Change{Progress: e.Progress})
			}
			audit = transitions(e, audit, seen)
			if e.Training != nil {
				seen(Change{Training: e.Training})
			}
			if e.Result != nil {
				res = e.Result
			}
		}
		if cs.Final && res == nil {
			r, err := s.API.Wait(ctx, id)
			if err != nil {
				return Status{}, err
			}
			res = &r
		}
	}
	sctx, cancel := context.WithTimeout(ctx, statusWait)
	st, err := s.API.Status(sctx, id)
	cancel()
	if err == nil && st.State.Final() {
		newTransitions(st.Status, audit, seen)
		return st, nil
	}
	if ctx.Err() != nil {
		return Status{}, ctx.Err()
	}
	// No worker answered: the result alone says how it ended, and its
	// reason is the final audit line's.
	if res.State != last {
		seen(Change{Transition: &task.Transition{Time: time.Now().UTC(), To: res.State, Reason: res.Reason}})
	}
	return fromResult(*res), nil
}

// transitions tells seen the audit entries of e not seen yet (the first
// audit were) and returns how many have been seen. A change that moved
// the state without its audit lines (no worker answered the server in
// time) shows nothing: a line without its actor and reason says less
// than the lines a later change or the final status brings.
func transitions(e server.Change, audit int, seen func(Change)) int {
	for i, tr := range e.Transitions {
		if e.AuditFrom+i >= audit {
			seen(Change{Transition: &tr})
		}
	}
	return max(audit, e.AuditFrom+len(e.Transitions))
}

// fromResult is the status a result alone gives: state, counts, usage,
// and the type of the failure from its reason ("Type: message").
func fromResult(r task.Result) Status {
	st := Status{Status: task.Status{ID: r.ID, State: r.State, Usage: r.Usage}}
	st.Progress.Counts = r.Counts
	if r.State == task.Failed {
		st.LastError = r.Reason
		if t, msg, ok := strings.Cut(r.Reason, ": "); ok && !strings.Contains(t, " ") {
			st.LastErrorType, st.LastError = task.ErrorType(t), msg
		}
	}
	for _, ref := range []task.ObjectRef{r.Output, r.Errors, r.Report} {
		if ref.Key != "" {
			st.Artifacts = append(st.Artifacts, ref)
		}
	}
	return st
}

func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Decide implements Client.
func (s Server) Decide(ctx context.Context, id, action string, d Decision) (Status, error) {
	return s.API.Decide(ctx, id, action, d)
}

// List implements Client.
func (s Server) List(ctx context.Context, r ListRequest) ([]taskclient.Summary, error) {
	return s.API.List(ctx, r.Tenant, r.ListRequest)
}

// Resubmit implements Client.
func (s Server) Resubmit(ctx context.Context, id string, which taskclient.Items) (taskclient.Resubmitted, error) {
	return s.API.Resubmit(ctx, id, which)
}

// Results implements Client.
func (s Server) Results(ctx context.Context, id, dir string, partial bool) ([]string, error) {
	st, err := s.API.Status(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := taskclient.CheckFinished(st.Status, partial); err != nil {
		return nil, err
	}
	files, err := s.API.Results(ctx, id)
	if err != nil {
		return nil, err
	}
	var paths []string
	seen := map[string]bool{}
	for _, f := range files {
		p, err := resultPath(dir, f.Name)
		if err == nil && seen[p] {
			err = fmt.Errorf("the server named two result files %q", f.Name)
		}
		if err != nil {
			return nil, err
		}
		seen[p] = true
		if err := s.API.Download(ctx, f, p); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// resultPath is where a result file the server names is written: the
// name is checked again here, whatever the server sent, so that it stays
// a relative path inside dir (no "..", no absolute path, no volume name)
// and a safe object name.
func resultPath(dir, name string) (string, error) {
	safe, err := storage.SafeName(name)
	if err != nil || safe != name || !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", task.Errorf(task.InvalidInput, "the server named a result file %q, which is not a file name inside %s; nothing written under it", name, dir)
	}
	return filepath.Join(dir, filepath.FromSlash(name)), nil
}

// Answer implements Client.
func (s Server) Answer(ctx context.Context, st Status) (json.RawMessage, error) {
	files, err := s.API.Results(ctx, st.ID)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"output.jsonl", "errors.jsonl"} {
		for _, f := range files {
			if path.Base(f.Name) != name || f.Size == 0 {
				continue
			}
			return firstLineAt(ctx, s.API.HTTP, f.URL)
		}
	}
	return nil, task.Errorf(task.NotFound, "task %s has no output", st.ID)
}

func firstLineAt(ctx context.Context, hc *http.Client, u string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the answer: %s", resp.Status)
	}
	return firstLine(bufio.NewReader(resp.Body))
}

func firstLine(r *bufio.Reader) (json.RawMessage, error) {
	line, err := r.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	line = []byte(strings.TrimSpace(string(line)))
	if !json.Valid(line) {
		return nil, errors.New("reading the answer: the output line is not JSON")
	}
	return line, nil
}

// Usage implements Client.
func (s Server) Usage(ctx context.Context, r UsageRequest) ([]usage.Row, error) {
	q := url.Values{}
	if r.Tenant != "" {
		q.Set("tenant", r.Tenant)
	}
	if !r.Since.IsZero() {
		q.Set("since", usage.Day(r.Since))
	}
	if !r.Until.IsZero() {
		q.Set("until", usage.Day(r.Until))
	}
	return s.API.Usage(ctx, q)
}

// Attach implements Client; the server finds the task's tenant, and
// refuses anyone but its submitter.
func (s Server) Attach(ctx context.Context, id string, paths []string, _ taskclient.AttachOptions) ([]taskclient.Attachment, error) {
	var out []taskclient.Attachment
	for _, p := range paths {
		a, err := s.API.Attach(ctx, "", id, p)
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}
