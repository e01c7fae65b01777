// Package apiclient is the client of the native API of `autoglm server`
// (internal/server): what the CLI uses when AUTOGLM_SERVER is set or the
// user ran `autoglm login`. It needs no Temporal or bucket settings: the
// server holds those, and results come as presigned URLs.
package apiclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/fleetclient"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// Client talks to one server with one API key.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	Key     string
	HTTP    *http.Client
	// PartSize is the part size of large uploads; DefaultPartSize if 0.
	PartSize int64
}

// Credentials are what `autoglm login` keeps in the user's config folder.
type Credentials struct {
	Server string `json:"server"`
	Key    string `json:"key"`
}

// CredentialsPath is where login keeps the credentials:
// <user config dir>/autoglm/credentials.json.
func CredentialsPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "autoglm", "credentials.json"), nil
}

// SaveCredentials writes c, readable by the user only (0600, in a 0700
// folder).
func SaveCredentials(path string, c Credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Direct, as AUTOGLM_SERVER, makes the CLI talk to Temporal and the bucket
// itself even when `autoglm login` saved a server: the operators'
// break-glass path.
const Direct = "direct"

// FromEnv is the client of AUTOGLM_SERVER with the key of AUTOGLM_API_KEY
// (or _FILE), falling back to the saved credentials; nil, nil when no
// server is configured.
func FromEnv() (*Client, error) {
	var saved Credentials
	if path, err := CredentialsPath(); err == nil {
		if b, err := os.ReadFile(path); err == nil {
			if err := json.Unmarshal(b, &saved); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	srv := os.Getenv("AUTOGLM_SERVER")
	if srv == Direct {
		return nil, nil
	}
	key := os.Getenv("AUTOGLM_API_KEY")
	if key == "" {
		if p := os.Getenv("AUTOGLM_API_KEY_FILE"); p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("AUTOGLM_API_KEY_FILE: %w", err)
			}
			key = strings.TrimSpace(string(b))
		}
	}
	if srv == "" {
		srv = saved.Server
	}
	if key == "" && (saved.Server == "" || saved.Server == srv) {
		key = saved.Key
	}
	if srv == "" {
		return nil, nil
	}
	if key == "" {
		return nil, task.Errorf(task.PermissionDenied, "no API key for %s: run `autoglm login` or set AUTOGLM_API_KEY", srv)
	}
	return New(srv, key), nil
}

// New is a client of base with key.
func New(base, key string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{BaseURL: strings.TrimRight(base, "/"), Key: key, HTTP: &http.Client{}}
}

// do sends a request and decodes a 2xx answer into out; other answers
// become errors of the server's type, so the CLI's exit codes follow.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("calling the autoglm server at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e server.APIError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
			return resp.StatusCode, fmt.Errorf("the autoglm server answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		t := task.ErrorType(e.Error.Type)
		if resp.StatusCode == http.StatusUnauthorized {
			t = task.PermissionDenied
		}
		if !t.Known() {
			// An untyped failure (the SDK names those after a Go type):
			// the message says what went wrong.
			return resp.StatusCode, errors.New(e.Error.Message)
		}
		return resp.StatusCode, &task.Error{Type: t, Msg: e.Error.Message}
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("reading the server's answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return strings.NewReader(string(b))
}

// Whoami is who the key authenticates.
func (c *Client) Whoami(ctx context.Context) (server.Whoami, error) {
	var w server.Whoami
	_, err := c.do(ctx, "GET", "/api/v1/whoami", nil, "", &w)
	return w, err
}

// Submit submits a prompt (r.Prompt) or a batch file (r.File, streamed to
// the server, which stores it in the bucket).
func (c *Client) Submit(ctx context.Context, r taskclient.SubmitRequest, metadata map[string]string) (server.Submitted, error) {
	var sub server.Submitted
	if (r.File == "") == (r.Prompt == "") {
		return sub, task.Errorf(task.InvalidInput, "give either a prompt or a batch file, not both or neither")
	}
	if len(r.Attach) > 0 {
		// Attachments go first, under the ID the task will have, so the
		// task starts with them.
		if r.ID == "" {
			r.ID = taskclient.NewID()
		}
		for _, path := range r.Attach {
			if _, err := c.Attach(ctx, r.Tenant, r.ID, path); err != nil {
				return sub, err
			}
		}
	}
	if r.File == "" {
		_, err := c.do(ctx, "POST", "/api/v1/tasks", jsonBody(server.SubmitRequest{
			ID: r.ID, Tenant: r.Tenant, Model: r.Model, Prompt: r.Prompt, Priority: r.Priority, Metadata: metadata,
		}), "application/json", &sub)
		return sub, err
	}
	if c.largeFile(r.File) {
		fileID, err := c.uploadParts(ctx, r.File, "batch")
		if err != nil {
			return sub, err
		}
		_, err = c.do(ctx, "POST", "/api/v1/tasks", jsonBody(server.SubmitRequest{
			ID: r.ID, Tenant: r.Tenant, Model: r.Model, Priority: r.Priority, Metadata: metadata, FileID: fileID,
		}), "application/json", &sub)
		return sub, err
	}
	f, err := os.Open(r.File)
	if err != nil {
		return sub, task.Errorf(task.InvalidInput, "%v", err)
	}
	defer f.Close()
	q := url.Values{}
	for k, v := range map[string]string{"id": r.ID, "tenant": r.Tenant, "model": r.Model, "name": filepath.Base(r.File)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if r.Priority != 0 {
		q.Set("priority", strconv.Itoa(r.Priority))
	}
	_, err = c.do(ctx, "POST", "/api/v1/tasks?"+q.Encode(), f, "application/jsonl", &sub)
	return sub, err
}

func taskPath(id string, rest ...string) string {
	return "/api/v1/tasks/" + url.PathEscape(id) + strings.Join(rest, "")
}

// Status is the task's status, masked as the caller's roles require.
func (c *Client) Status(ctx context.Context, id string) (server.TaskStatus, error) {
	var st server.TaskStatus
	_, err := c.do(ctx, "GET", taskPath(id), nil, "", &st)
	return st, err
}

// Decide sends approve, reject, cancel, pause, resume or set-priority;
// the actor is the key's user.
func (c *Client) Decide(ctx context.Context, id, action string, body server.DecisionBody) (server.TaskStatus, error) {
	var st server.TaskStatus
	_, err := c.do(ctx, "POST", taskPath(id, "/", action), jsonBody(body), "application/json", &st)
	return st, err
}

// List lists the tasks of the caller's tenants (of tenant, if not "").
func (c *Client) List(ctx context.Context, tenant string, r taskclient.ListRequest) ([]taskclient.Summary, error) {
	q := url.Values{}
	for k, v := range map[string]string{"tenant": tenant, "state": string(r.State), "model": r.Model, "submitter": r.Submitter, "kind": string(r.Kind)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if r.Limit > 0 {
		q.Set("limit", strconv.Itoa(r.Limit))
	}
	var out struct {
		Tasks []taskclient.Summary `json:"tasks"`
	}
	_, err := c.do(ctx, "GET", "/api/v1/tasks?"+q.Encode(), nil, "", &out)
	return out.Tasks, err
}

// Changes long-polls the task's changes after seq.
func (c *Client) Changes(ctx context.Context, id string, after int64, wait time.Duration) (server.Changes, error) {
	for {
		var cs server.Changes
		_, err := c.do(ctx, "GET", taskPath(id, fmt.Sprintf("/changes?after=%d&wait=%s", after, wait)), nil, "", &cs)
		if !rateLimited(err) {
			return cs, err
		}
		if err := pause(ctx); err != nil {
			return cs, err
		}
	}
}

// rateLimited reports whether the server refused a long poll because the
// user has as many open as it allows: a turn comes when one ends.
func rateLimited(err error) bool {
	var te *task.Error
	return errors.As(err, &te) && te.Type == task.RateLimited
}

// pause waits a second or two (spread, so that refused pollers do not
// come back together) or until ctx ends.
func pause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second + time.Duration(rand.Int64N(int64(time.Second)))):
		return nil
	}
}

// Wait blocks until the task ends and returns its result, by the server's
// long poll on the workflow's result: no worker is asked while it waits.
func (c *Client) Wait(ctx context.Context, id string) (task.Result, error) {
	for {
		var res task.Result
		code, err := c.do(ctx, "GET", taskPath(id, "/result?wait=50s"), nil, "", &res)
		if rateLimited(err) {
			if err := pause(ctx); err != nil {
				return res, err
			}
			continue
		}
		if err != nil {
			var te *task.Error
			if errors.As(err, &te) || ctx.Err() != nil {
				return res, err
			}
			// The server restarting, or a proxy cutting a long poll:
			// ask again.
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		if code == http.StatusOK {
			return res, nil
		}
	}
}

// Resubmit starts a new task with the failed or unanswered items of id.
func (c *Client) Resubmit(ctx context.Context, id string, which taskclient.Items) (taskclient.Resubmitted, error) {
	var res taskclient.Resubmitted
	_, err := c.do(ctx, "POST", taskPath(id, "/resubmit-", string(which)), nil, "", &res)
	return res, err
}

// Usage is the token report of GET /api/v1/usage with query q (tenant,
// since, until).
func (c *Client) Usage(ctx context.Context, q url.Values) ([]usage.Row, error) {
	var out server.UsageReport
	_, err := c.do(ctx, "GET", "/api/v1/usage?"+q.Encode(), nil, "", &out)
	return out.Data, err
}

// Results lists the task's files with presigned URLs.
func (c *Client) Results(ctx context.Context, id string) ([]server.ResultFile, error) {
	var out struct {
		Files []server.ResultFile `json:"files"`
	}
	_, err := c.do(ctx, "GET", taskPath(id, "/results"), nil, "", &out)
	return out.Files, err
}

// Download fetches f's URL into path and checks its sha256.
func (c *Client) Download(ctx context.Context, f server.ResultFile, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", f.URL, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("downloading %s: %s (the link may have expired; run results again)", f.Name, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), resp.Body); err != nil {
		out.Close()
		os.Remove(path)
		return fmt.Errorf("downloading %s: %w", f.Name, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); f.SHA256 != "" && got != f.SHA256 {
		os.Remove(path)
		return fmt.Errorf("downloading %s: sha256 %s does not match the task's %s", f.Name, got, f.SHA256)
	}
	return nil
}

// Attach uploads the file at path as an attachment of task id (its
// submitter's, or one not submitted yet), named after the file.
func (c *Client) Attach(ctx context.Context, tenant, id, path string) (taskclient.Attachment, error) {
	var a taskclient.Attachment
	if c.largeFile(path) {
		fileID, err := c.uploadParts(ctx, path, "user_data")
		if err != nil {
			return a, err
		}
		q := url.Values{"name": {filepath.Base(path)}, "file_id": {fileID}}
		if tenant != "" {
			q.Set("tenant", tenant)
		}
		_, err = c.do(ctx, "POST", taskPath(id, "/attachments?", q.Encode()), nil, "", &a)
		return a, err
	}
	f, err := os.Open(path)
	if err != nil {
		return a, task.Errorf(task.InvalidInput, "%v", err)
	}
	defer f.Close()
	q := url.Values{"name": {filepath.Base(path)}}
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	_, err = c.do(ctx, "POST", taskPath(id, "/attachments?", q.Encode()), f, "application/octet-stream", &a)
	return a, err
}

// Nodes lists the fleet's nodes (fleet operators).
func (c *Client) Nodes(ctx context.Context) ([]fleetclient.NodeView, error) {
	var out struct {
		Nodes []fleetclient.NodeView `json:"nodes"`
	}
	_, err := c.do(ctx, "GET", "/api/v1/fleet/nodes", nil, "", &out)
	return out.Nodes, err
}

// Drain stops node taking new work (on) or lets it take work again.
func (c *Client) Drain(ctx context.Context, node string, on bool) (task.FleetResult, error) {
	verb := "/undrain"
	if on {
		verb = "/drain"
	}
	var res task.FleetResult
	_, err := c.do(ctx, "POST", "/api/v1/fleet/nodes/"+url.PathEscape(node)+verb, nil, "", &res)
	return res, err
}

// Exec runs a fleet command and waits for its per-node result; the actor
// is the key's user, whatever cmd.Actor holds.
func (c *Client) Exec(ctx context.Context, cmd task.FleetCommand) (task.FleetResult, error) {
	body := server.FleetCommandBody{ID: cmd.ID, Action: cmd.Action, Selector: cmd.Selector, Args: cmd.Args, Concurrency: cmd.Concurrency}
	if cmd.NodeTimeout > 0 {
		body.NodeTimeout = cmd.NodeTimeout.String()
	}
	var res task.FleetResult
	_, err := c.do(ctx, "POST", "/api/v1/fleet/commands", jsonBody(body), "application/json", &res)
	return res, err
}

// Mirror copies a model revision into the bucket (fleet operators)
// and waits for it.
func (c *Client) Mirror(ctx context.Context, in task.MirrorInput) (task.MirrorResult, error) {
	var res task.MirrorResult
	_, err := c.do(ctx, "POST", "/api/v1/models/mirrors", jsonBody(server.MirrorBody{
		Name: in.Name, Repo: in.Repo, Revision: in.Revision, Upstream: in.Upstream,
	}), "application/json", &res)
	return res, err
}

// RequestAccess asks for a model for req.Tenant ("" is the key's tenant);
// the requester is the key's user.
func (c *Client) RequestAccess(ctx context.Context, req task.AccessRequest) (task.AccessRequest, error) {
	var out task.AccessRequest
	_, err := c.do(ctx, "POST", "/api/v1/models/requests", jsonBody(server.AccessRequestBody{
		ID: req.ID, Tenant: req.Tenant, Name: req.Model.Name, Repo: req.Model.Repo,
		Revision: req.Model.Revision, Upstream: req.Model.Upstream, Reason: req.Reason,
	}), "application/json", &out)
	return out, err
}

func accessPath(id string, rest ...string) string {
	return "/api/v1/models/requests/" + url.PathEscape(id) + strings.Join(rest, "")
}

// AccessStatus is an access request's status.
func (c *Client) AccessStatus(ctx context.Context, id string) (task.AccessStatus, error) {
	var st task.AccessStatus
	_, err := c.do(ctx, "GET", accessPath(id), nil, "", &st)
	return st, err
}

// DecideAccess approves or rejects an access request as the key's user.
func (c *Client) DecideAccess(ctx context.Context, id string, approve bool, reason string) (task.AccessStatus, error) {
	verb := "/reject"
	if approve {
		verb = "/approve"
	}
	var st task.AccessStatus
	_, err := c.do(ctx, "POST", accessPath(id, verb), jsonBody(server.DecisionBody{Reason: reason}), "application/json", &st)
	return st, err
}
