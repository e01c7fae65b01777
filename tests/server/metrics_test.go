package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// scrapeValue sums the series of family name whose labels include want
// (name, value pairs) in the /metrics at url; -1 when the family is
// missing.
func scrapeValue(t *testing.T, ctx context.Context, url, name string, want ...string) float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if strings.HasPrefix(url, suite.url) {
		// The server's metrics are for those who operate every tenant.
		req.Header.Set("Authorization", "Bearer "+suite.keys["oscar"])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	f := fams[name]
	if f == nil {
		return -1
	}
	sum := 0.0
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			match = match && labels[want[i]] == want[i+1]
		}
		switch {
		case !match:
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsOfServerAndWorker scrapes the server's /metrics and the
// worker's after a task: the server shows tasks by state, approvals,
// the day's tokens per tenant and model (equal to the usage report) and
// the fleet's nodes; the worker shows the model server's requests and
// tokens and its checkpoint writes, where they happen.
func TestMetricsOfServerAndWorker(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	var sub server.Submitted
	must(t, ctx, http.StatusCreated, "alice", "POST", "/api/v1/tasks", map[string]any{"prompt": "metrics, please", "model": "glm-4-test"}, &sub)
	var res task.Result
	must(t, ctx, http.StatusOK, "alice", "GET", "/api/v1/tasks/"+sub.ID+"/result?wait=60s", nil, &res)
	if res.State != task.Completed {
		t.Fatalf("task %s: %+v", sub.ID, res)
	}

	srv := suite.url + "/metrics"
	for _, c := range []struct {
		name string
		want []string
		min  float64
	}{
		{"autoglm_tasks", []string{"state", "COMPLETED"}, 1},
		{"autoglm_approvals_waiting", nil, 0},
		{"autoglm_approval_oldest_age_seconds", nil, 0},
		{"autoglm_visibility_up", nil, 1},
		{"autoglm_usage_tokens", []string{"tenant", "demo", "type", "total"}, 1},
		{"autoglm_usage_tasks", []string{"tenant", "demo", "model", "glm-4-test"}, 1},
		{"autoglm_node_up", []string{"node", "server-test"}, 1},
		{"autoglm_node_last_seen_timestamp_seconds", []string{"node", "server-test"}, float64(time.Now().Add(-time.Hour).Unix())},
		{"autoglm_server_sources_up", []string{"source", "usage"}, 1},
		{"autoglm_server_sources_up", []string{"source", "nodes"}, 1},
	} {
		// A scrape serves a reading begun after it arrived unless the
		// reading is slow (metrics.ReadingWait): ask until it shows.
		eventually(t, ctx, fmt.Sprintf("server: %s%v at least %v", c.name, c.want, c.min), func() (bool, error) {
			return scrapeValue(t, ctx, srv, c.name, c.want...) >= c.min, nil
		})
	}
	today := usage.Day(time.Now())
	var rep server.UsageReport
	must(t, ctx, http.StatusOK, "carol", "GET", "/api/v1/usage?tenant=demo&since="+today+"&until="+today, nil, &rep)
	var total int64
	for _, r := range rep.Data {
		total += r.TotalTokens
	}
	if v := scrapeValue(t, ctx, srv, "autoglm_usage_tokens", "tenant", "demo", "type", "total"); v != float64(total) {
		t.Errorf("server: demo's tokens today are %v in /metrics, %d in the usage report", v, total)
	}

	wrk := "http://" + suite.workerMetrics + "/metrics"
	for _, c := range []struct {
		name string
		want []string
	}{
		{"autoglm_llm_requests_total", []string{"outcome", "ok"}},
		{"autoglm_llm_request_duration_seconds", []string{"outcome", "ok"}},
		{"autoglm_llm_tokens_total", []string{"direction", "in"}},
		{"autoglm_llm_tokens_total", []string{"direction", "out"}},
		{"autoglm_checkpoint_last_timestamp_seconds", nil},
		{"autoglm_archived_bytes_total", nil},
		{"autoglm_tasks", []string{"state", "COMPLETED"}},
	} {
		eventually(t, ctx, fmt.Sprintf("worker: %s%v more than 0", c.name, c.want), func() (bool, error) {
			return scrapeValue(t, ctx, wrk, c.name, c.want...) > 0, nil
		})
	}
	if !strings.HasPrefix(suite.workerMetrics, "127.0.0.1:") {
		t.Errorf("the worker's metrics listen on %s, not loopback", suite.workerMetrics)
	}
}
