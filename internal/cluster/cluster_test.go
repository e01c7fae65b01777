package cluster

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The one config serves every process: rendered as the server renders it
// for a history process, it is valid YAML whose ports are all different,
// membership ports fit the schema's smallint, and the database password
// is not in the file.
func TestConfigServesEveryProcess(t *testing.T) {
	tm := &temporal{root: t.TempDir(), pgPort: 5999, password: "s3cret-pw"}
	if err := tm.writeConfig([]byte("matching.enableFairness:\n  - value: true\n"), 0); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(tm.root, "config", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if !strings.HasPrefix(text, "# enable-template") || strings.Contains(text, "s3cret-pw") {
		t.Fatalf("the config is not a server template, or holds the password:\n%s", text)
	}
	h := tm.ports["history-2"]
	env := map[string]string{
		"SERVER_SQL_PASSWORD": "x", "SERVER_METRICS_PORT": "9999",
		"SERVER_HISTORY_GRPC_PORT": strconv.Itoa(h.GRPC), "SERVER_HISTORY_MEMBERSHIP_PORT": strconv.Itoa(h.Membership),
	}
	rendered := regexp.MustCompile(`\{\{ env "([A-Z_]+)" \}\}`).ReplaceAllStringFunc(text, func(m string) string {
		return env[regexp.MustCompile(`"([A-Z_]+)"`).FindStringSubmatch(m)[1]]
	})
	var doc struct {
		Persistence struct {
			NumHistoryShards int `yaml:"numHistoryShards"`
		} `yaml:"persistence"`
		Services map[string]struct {
			RPC struct {
				GRPCPort       int `yaml:"grpcPort"`
				MembershipPort int `yaml:"membershipPort"`
			} `yaml:"rpc"`
		} `yaml:"services"`
		DynamicConfigClient struct {
			Filepath string `yaml:"filepath"`
		} `yaml:"dynamicConfigClient"`
	}
	if err := yaml.Unmarshal([]byte(rendered), &doc); err != nil {
		t.Fatalf("rendered config: %v\n%s", err, rendered)
	}
	if doc.Persistence.NumHistoryShards != HistoryShards || doc.Services["history"].RPC.GRPCPort != h.GRPC || len(doc.Services) != 4 {
		t.Errorf("rendered for history-2: %+v", doc)
	}
	if dc, err := os.ReadFile(doc.DynamicConfigClient.Filepath); err != nil || !strings.Contains(string(dc), "enableFairness") {
		t.Errorf("the dynamic config the server reads: %q, %v", dc, err)
	}
	seen := map[int]string{}
	for name, p := range tm.ports {
		for _, port := range []int{p.GRPC, p.Membership, p.HTTP, p.Metrics} {
			if other, ok := seen[port]; ok {
				t.Errorf("port %d is both %s's and %s's", port, name, other)
			}
			seen[port] = name
		}
		if p.Membership <= 0 || p.Membership > 32767 {
			t.Errorf("%s's membership port %d does not fit a smallint", name, p.Membership)
		}
	}
}

// The shipped prometheus.yml keeps its jobs and rules when the cluster
// shortens its intervals, and the scrape timeout follows.
func TestWithInterval(t *testing.T) {
	b, err := os.ReadFile("../../docker/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := withInterval(b, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"scrape_interval: 2s", "evaluation_interval: 2s", "scrape_timeout: 2s", "job_name: " + JobTemporal, "job_name: " + JobServer, "job_name: " + JobWorker, "alerts.yml"} {
		if !strings.Contains(s, want) {
			t.Errorf("prometheus.yml with a 2s interval lacks %q:\n%s", want, s)
		}
	}
}
