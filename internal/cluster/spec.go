package cluster

import "time"

// The settings below are the local cluster's and docker/'s alike:
// docker/compose_test.go fails when docker-compose.yml says otherwise.

// TemporalVersion is the Temporal server the cluster runs: the Makefile's
// TEMPORAL_SERVER_VERSION and the images' tag in docker/.
const TemporalVersion = "1.29.1"

// HistoryShards is the number of history shards, fixed for a cluster's
// life: both history processes share them.
const HistoryShards = 8

// Namespace is the namespace the cluster's processes use; `autoglm setup`
// registers it with NamespaceRetention.
const Namespace = "default"

// NamespaceRetention is how long closed workflows stay visible.
const NamespaceRetention = 30 * 24 * time.Hour

// Bucket is the bucket the cluster's processes share.
const Bucket = "autoglm"

// DynamicConfigFile is the Temporal server's dynamic config, relative to
// the module's root: the file docker/ mounts, given to the local cluster
// as it is, and what `autoglm setup --dynamic-config` checks.
const DynamicConfigFile = "docker/temporal-dynamicconfig.yaml"

// PrometheusFiles are Prometheus's configuration and rules, relative to
// the module's root; the configuration finds its targets in files under
// targets/ beside it (file_sd), which docker/ ships and the local cluster
// writes.
var PrometheusFiles = []string{"docker/prometheus.yml", "docker/alerts.yml"}

// Service is one Temporal server process.
type Service struct {
	// Name is the process's name: the compose service is "temporal-"+Name.
	Name string
	// Role is the server's --service: frontend, matching, history, worker.
	Role string
}

// Services are Temporal's processes: one of each role, and two history
// processes sharing the shards.
var Services = []Service{
	{Name: "frontend", Role: "frontend"},
	{Name: "history-1", Role: "history"},
	{Name: "history-2", Role: "history"},
	{Name: "matching", Role: "matching"},
	{Name: "worker", Role: "worker"},
}

// Node is one worker node: `autoglm worker` with its own models and
// labels.
type Node struct {
	Name   string
	Models []string
	Labels string // AUTOGLM_LABELS
}

// Nodes are the cluster's worker nodes: two serve the default policy's
// batch model, each with other models and labels beside it.
var Nodes = []Node{
	{Name: "gpu-0", Models: []string{"glm-4-test"}, Labels: "gpu=a100,region=eu-1"},
	{Name: "gpu-1", Models: []string{"glm-4-test", "glm-4-flash"}, Labels: "gpu=l40s,region=eu-1"},
	{Name: "gpu-2", Models: []string{"autoglm-phone-test"}, Labels: "gpu=l4,region=us-1"},
}

// Models are every model some node serves, in order of first mention.
func Models() []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range Nodes {
		for _, m := range n.Models {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}
