package docker

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/cluster"
)

// The compose file describes the local cluster (internal/cluster/spec.go):
// the same Temporal version and services, shards, dynamic config,
// namespace and retention, bucket, API server and worker nodes, and the
// same Prometheus configuration with targets for each. A change to one
// that the other lacks fails here.
func TestComposeIsTheLocalCluster(t *testing.T) {
	svcs := compose(t)

	mk := regexp.MustCompile(`TEMPORAL_SERVER_VERSION\s*:=\s*(\S+)`).FindStringSubmatch(read(t, "../Makefile"))
	if mk == nil || mk[1] != "v"+cluster.TemporalVersion {
		t.Errorf("the Makefile pins Temporal server %v; the cluster runs %s", mk, cluster.TemporalVersion)
	}
	var temporal []string
	for name, s := range svcs {
		if strings.HasPrefix(s.Image, "temporalio/server:") {
			temporal = append(temporal, name)
		}
		if strings.HasPrefix(s.Image, "temporalio/") && !strings.HasPrefix(s.Image, "temporalio/ui:") && !strings.HasSuffix(s.Image, ":"+cluster.TemporalVersion) {
			t.Errorf("%s runs %s; the cluster runs Temporal %s", name, s.Image, cluster.TemporalVersion)
		}
	}
	var want []string
	for _, s := range cluster.Services {
		name := "temporal-" + s.Name
		want = append(want, name)
		e := svcs[name].Environment
		if e["SERVICES"] != s.Role {
			t.Errorf("%s runs SERVICES=%q; the cluster's %s runs %s", name, e["SERVICES"], s.Name, s.Role)
		}
		if e["NUM_HISTORY_SHARDS"] != strconv.Itoa(cluster.HistoryShards) {
			t.Errorf("%s has NUM_HISTORY_SHARDS=%q; the cluster has %d", name, e["NUM_HISTORY_SHARDS"], cluster.HistoryShards)
		}
		if !slices.ContainsFunc(svcs[name].Volumes, func(v string) bool {
			return strings.HasPrefix(v, "./"+filepath.Base(cluster.DynamicConfigFile)+":") && strings.Contains(v, e["DYNAMIC_CONFIG_FILE_PATH"])
		}) {
			t.Errorf("%s does not run on %s: volumes %v, DYNAMIC_CONFIG_FILE_PATH %q", name, cluster.DynamicConfigFile, svcs[name].Volumes, e["DYNAMIC_CONFIG_FILE_PATH"])
		}
	}
	slices.Sort(temporal)
	slices.Sort(want)
	if !slices.Equal(temporal, want) {
		t.Errorf("compose runs Temporal as %v; the cluster as %v", temporal, want)
	}

	// setup registers the cluster's namespace with its retention.
	su := svcs["autoglm-setup"]
	cmd := anyStrings(su.Command)
	if i := slices.Index(cmd, "--namespace-retention"); i < 0 || i+1 >= len(cmd) || cmd[i+1] != cluster.NamespaceRetention.String() {
		t.Errorf("autoglm-setup runs %v; want --namespace-retention %s as the cluster's setup", cmd, cluster.NamespaceRetention)
	}
	if !slices.Contains(cmd, "--dynamic-config") {
		t.Errorf("autoglm-setup does not check the dynamic config: %v", cmd)
	}

	// The API server and the worker nodes: the cluster's.
	if c := anyStrings(svcs["server"].Command); !slices.Equal(c, []string{"server"}) {
		t.Errorf("service server runs %v; want autoglm server", c)
	}
	var nodes, wantNodes []string
	for name := range svcs {
		if strings.HasPrefix(name, "worker-") {
			nodes = append(nodes, name)
		}
	}
	for _, n := range cluster.Nodes {
		name := "worker-" + n.Name
		wantNodes = append(wantNodes, name)
		e := svcs[name].Environment
		if e["AUTOGLM_NODE"] != n.Name || e["AUTOGLM_MODELS"] != strings.Join(n.Models, ",") || e["AUTOGLM_LABELS"] != n.Labels {
			t.Errorf("%s is node %q serving %q with labels %q; the cluster's is %s serving %v with %s", name, e["AUTOGLM_NODE"], e["AUTOGLM_MODELS"], e["AUTOGLM_LABELS"], n.Name, n.Models, n.Labels)
		}
		if c := anyStrings(svcs[name].Command); !slices.Equal(c, []string{"worker"}) {
			t.Errorf("%s runs %v; want autoglm worker", name, c)
		}
	}
	slices.Sort(nodes)
	slices.Sort(wantNodes)
	if !slices.Equal(nodes, wantNodes) {
		t.Errorf("compose runs the nodes %v; the cluster %v", nodes, wantNodes)
	}
	for name, s := range svcs {
		e := s.Environment
		if b, ok := e["AUTOGLM_S3_BUCKET"]; ok && b != cluster.Bucket {
			t.Errorf("%s uses bucket %s; the cluster %s", name, b, cluster.Bucket)
		}
		if ns, ok := e["TEMPORAL_NAMESPACE"]; ok && ns != cluster.Namespace {
			t.Errorf("%s uses namespace %s; the cluster %s", name, ns, cluster.Namespace)
		}
	}

	// Prometheus: the cluster's configuration files, and a target for
	// every Temporal service, API server and node.
	p := svcs["prometheus"]
	for _, f := range cluster.PrometheusFiles {
		base := filepath.Base(f)
		if !slices.Contains(p.Volumes, "./"+base+":/etc/prometheus/"+base+":ro") {
			t.Errorf("prometheus does not mount %s: %v", f, p.Volumes)
		}
	}
	if !slices.Contains(p.Volumes, "./prometheus-targets:/etc/prometheus/targets:ro") {
		t.Errorf("prometheus does not mount its targets: %v", p.Volumes)
	}
	targets := func(job string) []string {
		var groups []struct{ Targets []string }
		if err := json.Unmarshal([]byte(read(t, "prometheus-targets/"+job+".json")), &groups); err != nil {
			t.Fatalf("prometheus-targets/%s.json: %v", job, err)
		}
		var out []string
		for _, g := range groups {
			out = append(out, g.Targets...)
		}
		return out
	}
	for _, s := range cluster.Services {
		port := strings.TrimPrefix(svcs["temporal-"+s.Name].Environment["PROMETHEUS_ENDPOINT"], "0.0.0.0:")
		if !slices.Contains(targets(cluster.JobTemporal), "temporal-"+s.Name+":"+port) {
			t.Errorf("Prometheus does not scrape temporal-%s:%s", s.Name, port)
		}
	}
	_, port, _ := strings.Cut(svcs["server"].Environment["AUTOGLM_SERVER_ADDR"], ":")
	if !slices.Contains(targets(cluster.JobServer), "server:"+port) {
		t.Errorf("Prometheus does not scrape the API server at server:%s", port)
	}
	for _, n := range cluster.Nodes {
		_, port, _ := strings.Cut(svcs["worker-"+n.Name].Environment["AUTOGLM_HEALTH_ADDR"], ":")
		if port == "" || !slices.Contains(targets(cluster.JobWorker), "worker-"+n.Name+":"+port) {
			t.Errorf("Prometheus does not scrape node %s's AUTOGLM_HEALTH_ADDR port %q", n.Name, port)
		}
	}
	conf := read(t, "prometheus.yml")
	for _, job := range []string{cluster.JobTemporal, cluster.JobServer, cluster.JobWorker} {
		if !strings.Contains(conf, "job_name: "+job+"\n") || !strings.Contains(conf, "targets/"+job+".json") {
			t.Errorf("prometheus.yml has no job %s reading targets/%s.json", job, job)
		}
	}
}

func anyStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
