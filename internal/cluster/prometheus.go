package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
)

// PrometheusBin is Debian's prometheus package's server.
const PrometheusBin = "/usr/bin/prometheus"

// Scrape jobs of docker/prometheus.yml: each reads its targets from
// targets/<job>.json beside the configuration.
const (
	JobTemporal = "temporal"
	JobServer   = "autoglm-server"
	JobWorker   = "autoglm-worker"
)

// targetGroup is one entry of a file_sd file.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// WriteTargets writes the targets/ files Prometheus's file_sd reads into
// dir: every Temporal process started and API server running, labelled
// with its name, and every worker node running. Prometheus re-reads them when they change.
func (c *Cluster) WriteTargets(dir string) error {
	groups := map[string][]targetGroup{}
	for _, s := range Services {
		groups[JobTemporal] = append(groups[JobTemporal], targetGroup{
			Targets: []string{"127.0.0.1:" + strconv.Itoa(c.temporal.ports[s.Name].Metrics)},
			Labels:  map[string]string{"temporal_service": s.Name},
		})
	}
	for _, t := range c.servers {
		if t.Proc.Exited() == nil {
			groups[JobServer] = append(groups[JobServer], targetGroup{Targets: []string{t.Addr}, Labels: map[string]string{"autoglm_server": t.Name}})
		}
	}
	for _, t := range c.nodes {
		if t.Proc.Exited() == nil {
			// No label: the node's series carry their own node label.
			groups[JobWorker] = append(groups[JobWorker], targetGroup{Targets: []string{t.Addr}})
		}
	}
	tdir := filepath.Join(dir, "targets")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return err
	}
	for _, job := range []string{JobTemporal, JobServer, JobWorker} {
		b, err := json.MarshalIndent(append([]targetGroup{}, groups[job]...), "", "  ")
		if err != nil {
			return err
		}
		// Renamed into place: Prometheus never reads half a file.
		tmp := filepath.Join(tdir, "."+job+".json")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(tdir, job+".json")); err != nil {
			return err
		}
	}
	return nil
}

// Prometheus is the Prometheus server StartPrometheus started.
type Prometheus struct {
	URL  string
	Dir  string
	Proc *devstack.Process
}

// StartPrometheus runs Prometheus on the shipped docker/prometheus.yml and
// alerts.yml, with every scrape and rule evaluation at interval (the
// shipped file says 15s), its targets written by WriteTargets, and waits
// until it is ready. Stop stops it.
func (c *Cluster) StartPrometheus(ctx context.Context, interval time.Duration) (*Prometheus, error) {
	if _, err := os.Stat(PrometheusBin); err != nil {
		return nil, fmt.Errorf("cluster: Prometheus is not installed at %s: apt-get install prometheus", PrometheusBin)
	}
	dir := filepath.Join(c.Dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	for _, f := range PrometheusFiles {
		b, err := os.ReadFile(filepath.Join(c.Root, f))
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if filepath.Base(f) == "prometheus.yml" {
			if b, err = withInterval(b, interval); err != nil {
				return nil, fmt.Errorf("cluster: %s: %w", f, err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			return nil, err
		}
	}
	if err := c.WriteTargets(dir); err != nil {
		return nil, err
	}
	// olga operates every tenant of the cluster's policy: the API
	// servers' /metrics lets her read it.
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "autoglm-server-metrics.key"), []byte(c.Keys["olga"]), 0o600); err != nil {
		return nil, err
	}
	addr, err := freeAddr("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p, err := devstack.StartProcess(devstack.ProcessOptions{
		Name: "prometheus", Bin: PrometheusBin, Dir: dir, LogPath: filepath.Join(c.LogDir, "prometheus.log"),
		Args: []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr},
	})
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	prom := &Prometheus{URL: "http://" + addr, Dir: dir, Proc: p}
	return prom, p.WaitFor(ctx, time.Minute, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, prom.URL+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
}

// withInterval sets global.scrape_interval and evaluation_interval.
func withInterval(b []byte, interval time.Duration) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := doc.Decode(&cfg); err != nil {
		return nil, err
	}
	g, _ := cfg["global"].(map[string]any)
	if g == nil {
		g = map[string]any{}
	}
	g["scrape_interval"], g["evaluation_interval"] = interval.String(), interval.String()
	if interval < 10*time.Second {
		g["scrape_timeout"] = interval.String() // at most the interval
	}
	cfg["global"] = g
	return yaml.Marshal(cfg)
}
