package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// listLimit is how many tasks the list shows: the newest.
const listLimit = 30

// summary is one task of GET /api/v1/tasks.
type summary struct {
	ID        string     `json:"id"`
	Tenant    string     `json:"tenant"`
	Submitter string     `json:"submitter"`
	Model     string     `json:"model"`
	Kind      string     `json:"kind"`
	State     task.State `json:"state"`
	Started   time.Time  `json:"started"`
}

// status is GET /api/v1/tasks/{id}: the task's status and metadata.
type status struct {
	task.Status
	Metadata map[string]string `json:"metadata,omitempty"`
}

// row is one task of the list, with its progress when the status query
// answered in time.
type row struct {
	summary
	Progress task.Progress
	Known    bool
	status   status
}

type tasksView struct {
	Rows          []row
	Tenant, State string
	States        []task.State
}

var allStates = []task.State{task.Submitted, task.AwaitingApproval, task.Dispatched, task.Running, task.Paused, task.Archiving, task.Completed, task.Rejected, task.Failed, task.Cancelled, task.Expired}

func (c *Console) tasksPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	v := tasksView{Tenant: q.Get("tenant"), State: q.Get("state"), States: allStates}
	rows, err := c.rows(r, s, url.Values{"tenant": {v.Tenant}, "state": {v.State}})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	v.Rows = rows
	final := true
	for _, rw := range rows {
		if !rw.State.Final() {
			final = false
		}
	}
	c.renderLayout(w, r, http.StatusOK, "tasks.html", layout{Title: "Tasks", S: s, Nav: "tasks", Live: true, Final: final && len(rows) > 0, Body: v})
}

// rows lists tasks through the API and asks each one's status, a few at
// a time, for its progress.
func (c *Console) rows(r *http.Request, s *session, filter url.Values) ([]row, error) {
	q := url.Values{"limit": {fmt.Sprint(listLimit)}}
	for k, v := range filter {
		if len(v) > 0 && v[0] != "" {
			q[k] = v
		}
	}
	var list struct {
		Tasks []summary `json:"tasks"`
	}
	if err := c.call(r, s.cred, "GET", "/api/v1/tasks?"+q.Encode(), nil, &list); err != nil {
		return nil, err
	}
	rows := make([]row, len(list.Tasks))
	g, ctx := errgroup.WithContext(r.Context())
	g.SetLimit(6)
	for i, t := range list.Tasks {
		rows[i].summary = t
		g.Go(func() error {
			qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			var st status
			// A task whose status does not answer (no worker) shows what
			// the list knows.
			if c.call(r.WithContext(qctx), s.cred, "GET", "/api/v1/tasks/"+url.PathEscape(t.ID), nil, &st) == nil {
				rows[i].Progress, rows[i].Known, rows[i].State, rows[i].status = st.Progress, true, st.State, st
			}
			return nil
		})
	}
	_ = g.Wait()
	return rows, nil
}

// file is one downloadable object of a task.
type file struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	URL  string `json:"url"`
}

// answer is one line of a task's output or errors, as the page shows it.
type answer struct {
	CustomID string
	Text     string
	Status   int
	Tokens   int
}

type taskView struct {
	status
	Files            []file
	Answers, Errors  []answer
	MoreAnswers      bool
	CanDecide, IsOwn bool
	CanCancel        bool
	Message          string
}

// answersShown and errorsShown bound what the task page reads of the
// output and error files; the rest is a download away.
const (
	answersShown = 5
	errorsShown  = 20
	readAtMost   = 256 << 10
)

func (c *Console) taskPage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	var v taskView
	if err := c.call(r, s.cred, "GET", "/api/v1/tasks/"+url.PathEscape(id), nil, &v.status); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var res struct {
		Files []file `json:"files"`
	}
	if err := c.call(r, s.cred, "GET", "/api/v1/tasks/"+url.PathEscape(id)+"/results", nil, &res); err == nil {
		v.Files = res.Files
	}
	for _, f := range v.Files {
		switch f.Name {
		case "output.jsonl":
			v.Answers, v.MoreAnswers = c.readLines(r.Context(), f.URL, answersShown)
		case "errors.jsonl":
			v.Errors, _ = c.readLines(r.Context(), f.URL, errorsShown)
		}
	}
	v.IsOwn = v.Submitter == s.User
	v.CanDecide = v.State == task.AwaitingApproval && !v.IsOwn && s.HasIn(v.Tenant, "reviewer", "admin")
	v.CanCancel = !v.State.Final() && (v.IsOwn || s.HasIn(v.Tenant, "admin", "operator"))
	v.Message = done(r)
	c.renderLayout(w, r, http.StatusOK, "task.html", layout{Title: "Task " + id, S: s, Nav: "tasks", Live: true, Final: v.State.Final(), Body: v})
}

// readLines reads the first n lines of an output or error file through
// its presigned URL: what the user could download, read for them.
func (c *Console) readLines(ctx context.Context, u string, n int) ([]answer, bool) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, false
	}
	resp, err := c.Fetch.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, readAtMost))
	sc.Buffer(nil, readAtMost)
	var out []answer
	for sc.Scan() {
		if len(out) == n {
			return out, true
		}
		out = append(out, parseLine(sc.Bytes()))
	}
	return out, false
}

// parseLine reads one line of the OpenAI Batch output format: the
// answer's text, or the error's message.
func parseLine(b []byte) answer {
	var l struct {
		CustomID string `json:"custom_id"`
		Response *struct {
			StatusCode int `json:"status_code"`
			Body       struct {
				Choices []struct {
					Message struct {
						Content string `json:"content"`
					} `json:"message"`
				} `json:"choices"`
				Usage struct {
					TotalTokens int `json:"total_tokens"`
				} `json:"usage"`
				Error *struct {
					Message string `json:"message"`
				} `json:"error"`
			} `json:"body"`
		} `json:"response"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return answer{Text: "(a line that is not JSON)"}
	}
	a := answer{CustomID: l.CustomID}
	switch {
	case l.Error != nil:
		a.Text = strings.TrimSpace(l.Error.Code + ": " + l.Error.Message)
	case l.Response != nil:
		a.Status, a.Tokens = l.Response.StatusCode, l.Response.Body.Usage.TotalTokens
		if len(l.Response.Body.Choices) > 0 {
			a.Text = l.Response.Body.Choices[0].Message.Content
		} else if l.Response.Body.Error != nil {
			a.Text = l.Response.Body.Error.Message
		}
	}
	return a
}

// download sends the browser to a fresh presigned URL of one of the
// task's files: the link on the page does not go stale.
func (c *Console) download(w http.ResponseWriter, r *http.Request, s *session) {
	id, name := r.PathValue("id"), r.PathValue("name")
	var res struct {
		Files []file `json:"files"`
	}
	if err := c.call(r, s.cred, "GET", "/api/v1/tasks/"+url.PathEscape(id)+"/results", nil, &res); err != nil {
		c.fail(w, r, s, err)
		return
	}
	for _, f := range res.Files {
		if f.Name == name {
			http.Redirect(w, r, f.URL, http.StatusSeeOther)
			return
		}
	}
	c.fail(w, r, s, &apiError{Status: http.StatusNotFound, Message: fmt.Sprintf("task %s has no file %s", id, name)})
}

// decide sends approve, reject or cancel through the API, as the user.
func (c *Console) decide(w http.ResponseWriter, r *http.Request, s *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	switch action {
	case "approve", "reject", "cancel":
	default:
		c.fail(w, r, s, &apiError{Status: http.StatusNotFound, Message: "no such action " + action})
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if action == "reject" && reason == "" {
		c.fail(w, r, s, &apiError{Status: http.StatusBadRequest, Message: "A rejection needs a reason: say why, so the submitter can fix it."})
		return
	}
	if err := c.call(r, s.cred, "POST", "/api/v1/tasks/"+url.PathEscape(id)+"/"+action, map[string]string{"reason": reason}, nil); err != nil {
		c.fail(w, r, s, err)
		return
	}
	back := Prefix + "tasks/" + url.PathEscape(id)
	if r.PostFormValue("from") == "inbox" {
		back = Prefix + "inbox"
	}
	http.Redirect(w, r, back+"?done="+url.QueryEscape(pastTense[action]+" "+id), http.StatusSeeOther)
}

var pastTense = map[string]string{"approve": "Approved", "reject": "Rejected", "cancel": "Cancelled"}
