package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// layout is the frame of every page: the data a page's template gets.
type layout struct {
	Title string
	S     *session
	// Nav is the page's name in the navigation.
	Nav string
	// Live pages refresh their [data-live] parts until Final.
	Live, Final bool
	Body        any
}

// doneMessage is the note a page shows after a decision (?done=), only
// in the words the console itself writes, so a link cannot put its own
// text on a page.
var doneMessage = regexp.MustCompile(`^(Approved|Rejected|Cancelled|Asked for) [A-Za-z0-9._:/@-]{1,200}$`)

func done(r *http.Request) string {
	if m := r.URL.Query().Get("done"); doneMessage.MatchString(m) {
		return m
	}
	return ""
}

// errorView is a page that only says what went wrong.
type errorView struct {
	Title, Message string
}

var funcs = template.FuncMap{
	// dict passes named values to a shared template.
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmt.Sprint(kv[i])] = kv[i+1]
		}
		return m
	},
	"age": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
		}
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	},
	"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"bytes": func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) },
	"comma": func(n int64) string { return humanize.Comma(n) },
	"stateClass": func(s task.State) string {
		switch s {
		case task.Completed:
			return "ok"
		case task.Failed, task.Rejected:
			return "bad"
		case task.Cancelled, task.Expired:
			return "ended"
		case task.AwaitingApproval, task.Paused:
			return "wait"
		}
		return "run"
	},
	"stateWord": func(s task.State) string { return strings.ReplaceAll(strings.ToLower(string(s)), "_", " ") },
	"pct": func(done, total int) int {
		if total <= 0 {
			return 0
		}
		return min(100, done*100/total)
	},
	"errRate": func(c task.Counts) string {
		if c.Done() == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f%%", float64(c.Failed)*100/float64(c.Done()))
	},
}

func (c *Console) parse() error {
	c.pages = map[string]*template.Template{}
	names, err := templateFS.ReadDir("templates")
	if err != nil {
		return err
	}
	for _, n := range names {
		if n.Name() == "layout.html" {
			continue
		}
		t, err := template.New(n.Name()).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n.Name())
		if err != nil {
			return err
		}
		c.pages[n.Name()] = t
	}
	return nil
}

// render writes page with body in the layout. The page is rendered to a
// buffer first, so a template error is a clean 500, not half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, page string, s *session, body any) {
	c.renderLayout(w, r, code, page, layout{S: s, Body: body})
}

func (c *Console) renderLayout(w http.ResponseWriter, r *http.Request, code int, page string, l layout) {
	t := c.pages[page]
	var buf bytes.Buffer
	if t == nil {
		c.Log.WithField("page", page).Error("console: no such template")
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", l); err != nil {
		c.Log.WithError(err).WithField("page", page).Error("console: rendering a page")
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// fail shows the API's refusal or error as a page, with its status.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := statusOf(err)
	v := errorView{Title: "Something went wrong", Message: err.Error()}
	switch code {
	case http.StatusNotFound:
		v.Title = "Not found"
	case http.StatusForbidden:
		v.Title = "Not allowed"
	case http.StatusUnauthorized:
		v.Title = "Signed out"
	}
	if code >= 500 {
		c.Log.WithError(err).WithField("path", r.URL.Path).Warn("console: a page failed")
	}
	c.render(w, r, code, "error.html", s, v)
}
