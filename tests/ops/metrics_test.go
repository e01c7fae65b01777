package ops

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// scrape is one read of a worker's /metrics.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value sums the series of name whose labels include want: counters and
// gauges by value, histograms by their count.
func (s scrape) value(name string, want ...string) float64 {
	f := s[name]
	if f == nil {
		return -1
	}
	var sum float64
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			match = match && labels[want[i]] == want[i+1]
		}
		if !match {
			continue
		}
		switch {
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

// sdk sums every series of the SDK's families whose names start with
// prefix, so the test does not hang on the exporter's suffixes.
func (s scrape) sdk(prefix string) (float64, string) {
	var sum float64
	var names []string
	for name := range s {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
			sum += s.value(name)
		}
	}
	return sum, strings.Join(names, ",")
}

// A worker's /metrics, scraped while a batch waits for approval and while
// it runs, shows the approval waiting, then requests, tokens, checkpoints,
// bytes archived and the SDK's own activity and workflow figures moving,
// and the finished task counted among the COMPLETED.
func TestMetricsMoveDuringATask(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	w := startWorker(t)
	before := scrapeMetrics(t, w.addr)
	if before.value("autoglm_node_last_announce_timestamp_seconds", "node", w.node) <= 0 {
		t.Errorf("no node liveness for %s before the task", w.node)
	}
	completedBefore := before.value("autoglm_tasks", "state", string(task.Completed))

	// The model answers 100 requests, then holds the rest until the
	// test has scraped: the task is caught running, whatever the speed.
	release := suite.model.HoldAfter(100)
	t.Cleanup(release)
	id := submit(t, ctx, taskclient.SubmitRequest{File: batchFile(t, 600, "Name a prime number")})
	waitState(t, ctx, id, task.AwaitingApproval)
	eventually(t, ctx, "the approval waiting in /metrics", func() (bool, error) {
		s := scrapeMetrics(t, w.addr)
		return s.value("autoglm_approvals_waiting") >= 1 && s.value("autoglm_approval_oldest_age_seconds") > 0, nil
	})
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "bob", Reason: "metrics test"}); err != nil {
		t.Fatal(err)
	}

	// During the run: the request counter moves between two scrapes taken
	// while the task is RUNNING, at least 100 answers apart (the requests
	// held by the first hold are answered beside the second's 100).
	ran := func(want float64) {
		t.Helper()
		eventually(t, ctx, fmt.Sprintf("at least %v requests counted while the task runs", want), func() (bool, error) {
			v := scrapeMetrics(t, w.addr).value("autoglm_llm_requests_total", "outcome", "ok")
			st, err := suite.tasks.Status(ctx, id)
			if err != nil {
				return false, err
			}
			return st.State == task.Running && v-max(before.value("autoglm_llm_requests_total", "outcome", "ok"), 0) >= want, nil
		})
	}
	ran(100)
	next := suite.model.HoldAfter(100)
	t.Cleanup(next)
	release()
	ran(200)
	next()

	res, err := suite.tasks.Wait(ctx, id)
	if err != nil || res.State != task.Completed {
		t.Fatalf("task ended %+v, %v; want COMPLETED", res, err)
	}
	after := scrapeMetrics(t, w.addr)
	for _, m := range []struct {
		name    string
		labels  []string
		atLeast float64
	}{
		{"autoglm_llm_requests_total", []string{"outcome", "ok"}, 600},
		{"autoglm_llm_request_duration_seconds", []string{"outcome", "ok"}, 600},
		{"autoglm_llm_tokens_total", []string{"direction", "in"}, 1},
		{"autoglm_llm_tokens_total", []string{"direction", "out"}, 1},
		{"autoglm_checkpoint_write_duration_seconds", nil, 1},
		{"autoglm_archived_bytes_total", []string{"category", "data"}, 1},
		{"autoglm_checkpoint_last_timestamp_seconds", nil, float64(time.Now().Add(-time.Hour).Unix())},
	} {
		if got := after.value(m.name, m.labels...) - max(before.value(m.name, m.labels...), 0); got < m.atLeast {
			t.Errorf("%s%v moved by %v during the task; want at least %v", m.name, m.labels, got, m.atLeast)
		}
	}
	// The SDK counts a workflow completed only once the server has
	// answered the worker's last workflow task, which can be after the
	// client saw the result: wait for it.
	for _, prefix := range []string{"temporal_activity_execution_latency", "temporal_workflow_completed", "temporal_request"} {
		b, _ := before.sdk(prefix)
		eventually(t, ctx, "SDK metrics "+prefix+"* moving", func() (bool, error) {
			a, _ := scrapeMetrics(t, w.addr).sdk(prefix)
			return a > b, nil
		})
	}
	eventually(t, ctx, "the task among the COMPLETED in /metrics", func() (bool, error) {
		return scrapeMetrics(t, w.addr).value("autoglm_tasks", "state", string(task.Completed)) > completedBefore, nil
	})
}
