package server

import (
	"context"
	"time"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/metrics"
)

// MetricsSources are what the server's /metrics reads at each scrape
// (metrics.RegisterServer): Temporal's visibility, the usage ledger of
// every tenant in the policy, and the fleet's node records and liveness.
func (s *Server) MetricsSources() metrics.ServerSources {
	return metrics.ServerSources{
		Temporal: s.Tasks.Temporal, Namespace: s.namespace(), Store: s.Tasks.Store,
		Tenants: func() map[string][]string {
			p, err := s.Policy.Current()
			if err != nil {
				return nil
			}
			out := map[string][]string{}
			for name, t := range p.Tenants {
				out[name] = t.Models
			}
			return out
		},
		Nodes: func(ctx context.Context) ([]metrics.NodeSample, error) {
			acts := &activities.Activities{Store: s.Tasks.Store, Temporal: s.Tasks.Temporal, Namespace: s.namespace()}
			nodes, err := acts.LiveNodes(ctx)
			if err != nil {
				return nil, err
			}
			now := time.Now()
			out := make([]metrics.NodeSample, len(nodes))
			for i, n := range nodes {
				out[i] = metrics.NodeSample{Name: n.Name, LastSeen: n.LastSeen, Alive: n.Alive(now), Running: n.Running, Drained: n.Drained}
			}
			return out, nil
		},
	}
}
