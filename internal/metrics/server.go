package metrics

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// NodeSample is one node as the fleet's records and liveness have it.
type NodeSample struct {
	Name     string
	LastSeen time.Time
	Alive    bool
	Running  int64
	Drained  bool
}

// ServerSources are what the server's own metrics read at each scrape:
// the cluster's figures, whichever server is scraped.
type ServerSources struct {
	Temporal  client.Client
	Namespace string
	// Store holds the usage ledger; Tenants names the tenants to report,
	// each with the models it may use: their usage series are there, at
	// 0, before the day's first task of the model ends.
	Store   storage.Store
	Tenants func() map[string][]string
	// Nodes lists the fleet's nodes with their liveness.
	Nodes func(context.Context) ([]NodeSample, error)
}

// RegisterServer adds what `autoglm server` exports beside the SDK's
// metrics: tasks by state and approvals (as the worker does), the
// tokens of the day per tenant and model from the usage ledger, and the
// fleet's nodes. The model-server figures (requests, latency, tokens
// per answer) and checkpoint writes happen on the workers and are
// exported there.
func (m *Metrics) RegisterServer(src ServerSources) error {
	if err := m.RegisterTasks(src.Temporal, src.Namespace); err != nil {
		return err
	}
	return m.Registry.Register(newReading(&serverCollector{
		src:    src,
		tokens: prometheus.NewDesc(Namespace+"_usage_tokens", "Tokens of the tasks that ended today (UTC), per tenant and model, from the usage ledger: type=prompt, completion or total.", []string{"tenant", "model", "type"}, nil),
		tasks:  prometheus.NewDesc(Namespace+"_usage_tasks", "Tasks that ended today (UTC) having answered something, per tenant and model, from the usage ledger.", []string{"tenant", "model"}, nil),
		seen:   prometheus.NewDesc(Namespace+"_node_last_seen_timestamp_seconds", "Unix time the node last polled its queue (its last sign of life).", []string{"node"}, nil),
		nodeUp: prometheus.NewDesc(Namespace+"_node_up", "1 if the node polled its queue in the last 90 s.", []string{"node"}, nil),
		busy:   prometheus.NewDesc(Namespace+"_node_running_pieces", "Pieces the node runs now, as its record says.", []string{"node"}, nil),
		drain:  prometheus.NewDesc(Namespace+"_node_drained", "1 if the node is drained (takes no new work).", []string{"node"}, nil),
		up:     prometheus.NewDesc(Namespace+"_server_sources_up", "1 if the last scrape could read the source: source=usage or nodes.", []string{"source"}, nil),
	}, ReadingWait))
}

type serverCollector struct {
	src                                          ServerSources
	tokens, tasks, seen, nodeUp, busy, drain, up *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tokens, c.tasks, c.seen, c.nodeUp, c.busy, c.drain, c.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up(c.collectUsage(ctx, ch)), "usage")
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up(c.collectNodes(ctx, ch)), "nodes")
}

func up(err error) float64 {
	if err != nil {
		return 0
	}
	return 1
}

func (c *serverCollector) collectUsage(ctx context.Context, ch chan<- prometheus.Metric) error {
	if c.src.Store == nil || c.src.Tenants == nil {
		return nil
	}
	now := time.Now()
	tenants := c.src.Tenants()
	var recs []usage.Record
	for _, t := range slices.Sorted(maps.Keys(tenants)) {
		rs, err := usage.Read(ctx, c.src.Store, t, now, now)
		if err != nil {
			return err
		}
		recs = append(recs, rs...)
	}
	rows := usage.Rows(recs)
	for t, models := range tenants {
		for _, m := range models {
			if m != "*" && !slices.ContainsFunc(rows, func(r usage.Row) bool { return r.Tenant == t && r.Model == m }) {
				rows = append(rows, usage.Row{Tenant: t, Model: m})
			}
		}
	}
	for _, r := range rows {
		for typ, v := range map[string]int64{"prompt": r.PromptTokens, "completion": r.CompletionTokens, "total": r.TotalTokens} {
			ch <- prometheus.MustNewConstMetric(c.tokens, prometheus.GaugeValue, float64(v), r.Tenant, r.Model, typ)
		}
		ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(r.Tasks), r.Tenant, r.Model)
	}
	return nil
}

func (c *serverCollector) collectNodes(ctx context.Context, ch chan<- prometheus.Metric) error {
	if c.src.Nodes == nil {
		return nil
	}
	nodes, err := c.src.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		ch <- prometheus.MustNewConstMetric(c.seen, prometheus.GaugeValue, float64(n.LastSeen.Unix()), n.Name)
		ch <- prometheus.MustNewConstMetric(c.nodeUp, prometheus.GaugeValue, bool01(n.Alive), n.Name)
		ch <- prometheus.MustNewConstMetric(c.busy, prometheus.GaugeValue, float64(n.Running), n.Name)
		ch <- prometheus.MustNewConstMetric(c.drain, prometheus.GaugeValue, bool01(n.Drained), n.Name)
	}
	return nil
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
