package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/cluster"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// promQuery is one instant query through Prometheus's HTTP API; it
// returns the samples' values by their labels.
func promQuery(ctx context.Context, base, q string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(q), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, body.Error)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, _ := strconv.ParseFloat(s, 64)
		out[fmt.Sprint(r.Metric)] = v
	}
	return out, nil
}

// readmeMetric is a series the README's metrics table names: where the
// table says it is exported ("server", "worker", or both) and its labels.
type readmeMetric struct {
	where  string
	labels []string
}

// readmeMetrics are the autoglm series the README's metrics table names.
func readmeMetrics(t *testing.T) map[string]readmeMetric {
	b, err := os.ReadFile(filepath.Join(suite.Root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]readmeMetric{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `autoglm_") {
			continue
		}
		cells := strings.Split(line, "|")
		for _, m := range regexp.MustCompile("`(autoglm_[a-z_]+)(?:\\{([a-z_,]*)\\})?`").FindAllStringSubmatch(cells[1], -1) {
			names[m[1]] = readmeMetric{where: strings.TrimSpace(cells[2]), labels: strings.Split(m[2], ",")}
		}
	}
	if len(names) < 8 {
		t.Fatalf("the README's metrics table names %v; want its autoglm series", names)
	}
	return names
}

// logTargets logs each scrape target's health as Prometheus has it.
func logTargets(t *testing.T, base string) {
	resp, err := http.Get(base + "/api/v1/targets")
	if err != nil {
		t.Logf("/api/v1/targets: %v", err)
		return
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL          string            `json:"scrapeUrl"`
				Labels             map[string]string `json:"labels"`
				Health             string            `json:"health"`
				LastError          string            `json:"lastError"`
				LastScrapeDuration float64           `json:"lastScrapeDuration"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Logf("/api/v1/targets: %v", err)
		return
	}
	for _, tg := range body.Data.ActiveTargets {
		t.Logf("target %s %s: %s in %.3f s %s", tg.Labels["job"], tg.ScrapeURL, tg.Health, tg.LastScrapeDuration, tg.LastError)
	}
}

// Prometheus on the shipped prometheus.yml and alerts.yml scrapes every
// Temporal process, both API servers and each node of the running
// cluster; while a batch runs, its HTTP API returns what a dashboard plots
// (items per second, model latency, checkpoint age, node liveness); once
// it is done, tasks by state and every series the README's metrics table
// names, the server's from each API server; and the alert rules are loaded
// and healthy.
func TestPrometheusOnTheCluster(t *testing.T) {
	ctx := testenv.Context(t, 10*time.Minute)
	// A second API server: Prometheus scrapes every one.
	_, procB, err := suite.cl.StartServer(ctx, "server-prometheus", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { procB.Stop(10 * time.Second) })
	servers := 2
	// A node's scrape counts tasks by state in the visibility store: on a
	// busy machine it takes over a second.
	prom, err := suite.cl.StartPrometheus(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Proc.Stop(10 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			logTargets(t, prom.URL)
		}
	})
	// A batch long enough to span several scrapes: rates need two.
	suite.cl.Model.SetFaults(testmodel.Faults{Latency: 100 * time.Millisecond})
	t.Cleanup(func() { suite.cl.Model.SetFaults(testmodel.Faults{Latency: 20 * time.Millisecond}) })
	in := writeBatch(t, "prometheus", 3000)
	id := submitApproved(t, ctx, "prometheus", in)

	want := map[string]func(map[string]float64) bool{
		// Every process answers its scrape.
		`up{job="temporal"} == 1`:       func(r map[string]float64) bool { return len(r) == len(cluster.Services) },
		`up{job="autoglm-server"} == 1`: func(r map[string]float64) bool { return len(r) == servers },
		`up{job="autoglm-worker"} == 1`: func(r map[string]float64) bool { return len(r) == len(cluster.Nodes) },
		// Temporal's own series, from each of its processes.
		`count by (temporal_service) ({job="temporal"})`: func(r map[string]float64) bool { return len(r) == len(cluster.Services) },
		// What a dashboard plots: tasks by state, items per second, model
		// latency, checkpoint age, node liveness. The rates look back 10
		// minutes, longer than the test may run, so that they still hold
		// when asked after the batch has ended on a slow machine.
		`sum(rate(autoglm_llm_requests_total{outcome="ok"}[10m])) > 0`:                                      nonEmpty,
		`histogram_quantile(0.5, sum by (le) (rate(autoglm_llm_request_duration_seconds_bucket[10m]))) > 0`: nonEmpty,
		`time() - max(autoglm_checkpoint_last_timestamp_seconds > 0) < 300`:                                 nonEmpty,
		`time() - autoglm_node_last_announce_timestamp_seconds < 60`:                                        func(r map[string]float64) bool { return len(r) == len(cluster.Nodes) },
	}
	ask := func(want map[string]func(map[string]float64) bool) {
		for _, q := range slices.Sorted(maps.Keys(want)) {
			var got map[string]float64
			testenv.Eventually(t, ctx, "Prometheus to answer "+q, time.Second, func() (bool, error) {
				var err error
				got, err = promQuery(ctx, prom.URL, q)
				return err == nil && want[q](got), err
			})
			t.Logf("%s: %v", q, got)
		}
	}
	ask(want)
	exact(t, ctx, id, in)
	// Once it is done: tasks by state, and every series the README names.
	after := map[string]func(map[string]float64) bool{`autoglm_tasks{state="COMPLETED"} > 0`: nonEmpty}
	for name, m := range readmeMetrics(t) {
		if slices.Contains(m.labels, "task") {
			// A series per fine-tuning task, there while the task trains
			// on a node: none trains here (tests/server's fine-tuning
			// test scrapes it from the worker).
			continue
		}
		series := fmt.Sprintf(`{__name__=~"%s(_bucket|_total)?"}`, name)
		after[fmt.Sprintf(`count(%s)`, series)] = nonEmpty
		if strings.Contains(m.where, "server") {
			after[fmt.Sprintf(`count by (instance) (%s, job="autoglm-server"})`, strings.TrimSuffix(series, "}"))] = func(r map[string]float64) bool { return len(r) == servers }
		}
	}
	ask(after)

	// The shipped rules are loaded and evaluate without error.
	resp, err := http.Get(prom.URL + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rules); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("alert %s does not evaluate on the cluster's series", r.Name)
			}
		}
	}
	if n < 8 {
		t.Errorf("Prometheus loaded %d rules; want the 8 of alerts.yml", n)
	}
}

func nonEmpty(r map[string]float64) bool { return len(r) > 0 }
