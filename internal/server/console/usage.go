package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// usageRow is one day, tenant and model of GET /api/v1/usage.
type usageRow struct {
	Day              string `json:"day"`
	Tenant           string `json:"tenant"`
	Model            string `json:"model"`
	Tasks            int64  `json:"tasks"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	TotalTokens      int64  `json:"total_tokens"`
}

type usageView struct {
	Tenant, Since, Until string
	Rows                 []usageRow
	Chart                chart
	// Missing says the server has no usage API to read.
	Missing bool
	Total   int64
}

// usageDays is the default span of the usage page.
const usageDays = 14

func (c *Console) usagePage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	today := time.Now().UTC()
	v := usageView{Tenant: q.Get("tenant"), Since: q.Get("since"), Until: q.Get("until")}
	if v.Tenant == "" {
		v.Tenant = s.Tenant
		if v.Tenant == "" && len(s.TenantNames()) > 0 {
			v.Tenant = s.TenantNames()[0]
		}
	}
	if _, err := time.Parse(time.DateOnly, v.Until); err != nil {
		v.Until = today.Format(time.DateOnly)
	}
	if _, err := time.Parse(time.DateOnly, v.Since); err != nil {
		v.Since = today.AddDate(0, 0, -(usageDays - 1)).Format(time.DateOnly)
	}
	var out struct {
		Data []usageRow `json:"data"`
	}
	err := c.call(r, s.cred, "GET", "/api/v1/usage?"+url.Values{"tenant": {v.Tenant}, "since": {v.Since}, "until": {v.Until}}.Encode(), nil, &out)
	switch {
	case statusOf(err) == http.StatusNotFound || statusOf(err) == http.StatusMethodNotAllowed:
		v.Missing = true
	case err != nil:
		c.fail(w, r, s, err)
		return
	}
	v.Rows = out.Data
	for _, u := range v.Rows {
		v.Total += u.TotalTokens
	}
	v.Chart = usageChart(v.Rows, v.Since, v.Until)
	c.renderLayout(w, r, http.StatusOK, "usage.html", layout{Title: "Usage", S: s, Nav: "usage", Body: v})
}

// chart is a stacked bar chart of tokens per day, one colour per model,
// drawn as inline SVG by the template.
type chart struct {
	Width, Height int
	Bars          []bar
	Legend        []legend
	Max           int64
	Ticks         []tick
}

type bar struct {
	X, Y, W, H int
	Colour     string
	Title      string
}

type legend struct{ Model, Colour string }

type tick struct {
	X, Y  int
	Label string
}

// palette tells models apart, and keeps enough contrast on white.
var palette = []string{"#2f6fd0", "#d9822b", "#2e9e6b", "#a34ec2", "#c23b3b", "#6b7a8f", "#b59b00", "#1f9bb5"}

func usageChart(rows []usageRow, since, until string) chart {
	ch := chart{Width: 760, Height: 260}
	from, _ := time.Parse(time.DateOnly, since)
	to, _ := time.Parse(time.DateOnly, until)
	days := int(to.Sub(from).Hours()/24) + 1
	if days < 1 || days > 366 {
		return ch
	}
	var models []string
	perDay := map[string]int64{}
	for _, u := range rows {
		if !slices.Contains(models, u.Model) {
			models = append(models, u.Model)
		}
		perDay[u.Day] += u.TotalTokens
	}
	slices.Sort(models)
	for i, m := range models {
		ch.Legend = append(ch.Legend, legend{Model: m, Colour: palette[i%len(palette)]})
	}
	for _, n := range perDay {
		ch.Max = max(ch.Max, n)
	}
	const left, bottom, top = 60, 30, 10
	plotH := ch.Height - bottom - top
	step := (ch.Width - left) / days
	for d := 0; d < days; d++ {
		day := from.AddDate(0, 0, d).Format(time.DateOnly)
		x := left + d*step
		if days <= 16 || d%(days/8+1) == 0 {
			ch.Ticks = append(ch.Ticks, tick{X: x + step/2, Y: ch.Height - 10, Label: day[5:]})
		}
		y := ch.Height - bottom
		for i, m := range models {
			var n int64
			for _, u := range rows {
				if u.Day == day && u.Model == m {
					n += u.TotalTokens
				}
			}
			if n == 0 || ch.Max == 0 {
				continue
			}
			h := max(1, int(n*int64(plotH)/ch.Max))
			y -= h
			ch.Bars = append(ch.Bars, bar{X: x + 2, Y: y, W: max(step-4, 2), H: h, Colour: palette[i%len(palette)], Title: fmt.Sprintf("%s %s: %d tokens", day, m, n)})
		}
	}
	return ch
}
