// Package docker holds no code: its test checks the compose file, the
// Dockerfiles, the Prometheus rules and the bucket policy against the
// code's configuration, since no Docker engine runs where tests do.
package docker

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/metrics"
	"github.com/autoglm-flow/autoglm-flow/internal/setup"
)

type service struct {
	Image       string                       `yaml:"image"`
	Build       *struct{ Dockerfile string } `yaml:"build"`
	Command     any                          `yaml:"command"`
	Entrypoint  any                          `yaml:"entrypoint"`
	Environment map[string]string            `yaml:"environment"`
	Ports       []string                     `yaml:"ports"`
	Volumes     []string                     `yaml:"volumes"`
	DependsOn   any                          `yaml:"depends_on"`
}

func compose(t *testing.T) map[string]service {
	t.Helper()
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]service `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return doc.Services
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The services and images: maintained, pinned, no deprecated auto-setup,
// no MinIO image, the schema set up by admin-tools before the server
// starts, a UI that shows user metadata, priority and fairness.
func TestComposeImages(t *testing.T) {
	svcs := compose(t)
	for _, name := range []string{"postgres", "temporal-schema", "temporal-frontend", "temporal-ui", "s3", "s3-setup", "autoglm-setup", "server", "worker-gpu-0", "prometheus"} {
		if _, ok := svcs[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	for name, s := range svcs {
		if s.Image == "" {
			if s.Build == nil {
				t.Errorf("%s has neither image nor build", name)
			}
			continue
		}
		repo, tag, ok := strings.Cut(s.Image, ":")
		if !ok || tag == "" || tag == "latest" {
			t.Errorf("%s: image %s is not pinned to a version", name, s.Image)
		}
		if strings.Contains(repo, "auto-setup") || strings.Contains(repo, "minio") {
			t.Errorf("%s: image %s is deprecated or no longer served", name, s.Image)
		}
	}
	if img := svcs["temporal-frontend"].Image; !strings.HasPrefix(img, "temporalio/server:") {
		t.Errorf("temporal-frontend runs %s; want temporalio/server", img)
	}
	if img := svcs["temporal-schema"].Image; !strings.HasPrefix(img, "temporalio/admin-tools:") {
		t.Errorf("the schema is set up by %s; want temporalio/admin-tools", img)
	}
	for name, s := range svcs {
		if !strings.HasPrefix(s.Image, "temporalio/server:") {
			continue
		}
		if dep, _ := s.DependsOn.(map[string]any); dep["temporal-schema"] == nil ||
			dep["temporal-schema"].(map[string]any)["condition"] != "service_completed_successfully" {
			t.Errorf("%s does not wait for its schema: depends_on %v", name, s.DependsOn)
		}
	}
	_, v, _ := strings.Cut(svcs["temporal-ui"].Image, ":")
	if semver(v) < semver("2.42.0") {
		t.Errorf("temporalio/ui:%s predates 2.42, which shows user metadata, priority and fairness", v)
	}
	serverTag := strings.SplitN(svcs["temporal-frontend"].Image, ":", 2)[1]
	for _, n := range []string{"temporal-schema"} {
		if !strings.HasSuffix(svcs[n].Image, ":"+serverTag) {
			t.Errorf("%s runs %s; want admin-tools of the server's version %s", n, svcs[n].Image, serverTag)
		}
	}
}

func semver(v string) int {
	n := 0
	for _, p := range strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3) {
		d, _ := strconv.Atoi(strings.TrimFunc(p, func(r rune) bool { return r < '0' || r > '9' }))
		n = n*1000 + d
	}
	return n
}

// No failure is hidden: no "|| true" in the compose file or its scripts.
func TestNoHiddenFailures(t *testing.T) {
	for _, f := range []string{"docker-compose.yml", "temporal-schema.sh", "s3-setup.sh", "Dockerfile", "Dockerfile.versitygw"} {
		if text := read(t, f); regexp.MustCompile(`\|\|\s*true`).MatchString(text) {
			t.Errorf("%s hides a failure with || true", f)
		}
		if strings.HasSuffix(f, ".sh") && !strings.Contains(read(t, f), "set -eu") {
			t.Errorf("%s does not stop at the first failure (set -eu)", f)
		}
	}
}

// Every autoglm variable a service sets is one the code reads; secrets come
// from the environment, never from the file; the worker has its own
// credentials, not the store's root; ports line up.
func TestComposeMatchesTheConfiguration(t *testing.T) {
	svcs := compose(t)
	autoglm := func(name string) bool {
		return name == "server" || name == "autoglm-setup" || strings.HasPrefix(name, "worker-")
	}
	for name, s := range svcs {
		for k, v := range s.Environment {
			if (strings.HasPrefix(k, "AUTOGLM_") || strings.HasPrefix(k, "TEMPORAL_ADDRESS")) && autoglm(name) {
				if _, ok := config.Lookup(k); !ok {
					t.Errorf("%s sets %s, which the code does not read", name, k)
				}
			}
			if ref, ok := config.Lookup(k); ok && ref.Secret && !strings.HasPrefix(v, "${") {
				t.Errorf("%s: secret %s is written in the file", name, k)
			}
			if strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET") || strings.Contains(k, "PRIVATE") {
				if !strings.HasPrefix(v, "${") {
					t.Errorf("%s: %s is written in the file", name, k)
				}
			}
		}
	}
	s3, su := svcs["s3"].Environment, svcs["autoglm-setup"].Environment
	if !strings.Contains(su["AUTOGLM_S3_ACCESS_KEY"], "ROOT") || su["WORKER_ACCESS_KEY"] != "${AUTOGLM_WORKER_ACCESS_KEY}" {
		t.Errorf("autoglm-setup must hold the root credentials and name the worker's account: %v", su)
	}
	// The worker reaches the store where it listens.
	s3Port := "7070"
	if cmd, _ := svcs["s3"].Command.([]any); !slices.Contains(cmd, any(":"+s3Port)) || !slices.Contains(svcs["s3"].Ports, s3Port+":"+s3Port) {
		t.Errorf("s3 does not listen on :%s: %v %v", s3Port, svcs["s3"].Command, svcs["s3"].Ports)
	}
	for name, s := range svcs {
		if !autoglm(name) {
			continue
		}
		e := s.Environment
		if name != "autoglm-setup" && (e["AUTOGLM_S3_ACCESS_KEY"] == s3["ROOT_ACCESS_KEY"] || strings.Contains(e["AUTOGLM_S3_ACCESS_KEY"], "ROOT")) {
			t.Errorf("%s uses the store's root credentials %s", name, e["AUTOGLM_S3_ACCESS_KEY"])
		}
		if e["AUTOGLM_S3_STAT_BEFORE_REPLACE"] != "true" {
			t.Errorf("%s on versitygw needs AUTOGLM_S3_STAT_BEFORE_REPLACE=true", name)
		}
		if ep := e["AUTOGLM_S3_ENDPOINT"]; ep != "s3:"+s3Port {
			t.Errorf("%s's AUTOGLM_S3_ENDPOINT is %s; want s3:%s", name, ep, s3Port)
		}
		if a := e["TEMPORAL_ADDRESS"]; a != "temporal-frontend:7233" {
			t.Errorf("%s's TEMPORAL_ADDRESS is %s", name, a)
		}
	}
	// setup checks the dynamic config the server is given.
	checks, err := setup.CheckDynamicConfig("temporal-dynamicconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("temporal-dynamicconfig.yaml: %s: %s", c.What, c.Detail)
		}
	}
}

// Images run as non-root, and the store's volume is owned by that user.
func TestNonRoot(t *testing.T) {
	if d := read(t, "Dockerfile"); !strings.Contains(d, ":nonroot") {
		t.Error("the autoglm image does not run as nonroot")
	}
	v := read(t, "Dockerfile.versitygw")
	if !strings.Contains(v, "USER 65532") || !strings.Contains(v, "--chown=65532:65532 /data /data") {
		t.Error("versitygw does not run as 65532 with /data owned by it")
	}
	mk := read(t, "../Makefile")
	m := regexp.MustCompile(`VERSITYGW_VERSION\s*:=\s*(\S+)`).FindStringSubmatch(mk)
	if m == nil || !strings.Contains(v, "VERSITYGW_VERSION="+m[1]) {
		t.Errorf("Dockerfile.versitygw does not build the Makefile's versitygw %v", m)
	}
}

// Every autoglm metric an alert uses is one the code exports.
func TestAlertsUseExportedMetrics(t *testing.T) {
	m, err := metrics.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterTasks(nil, "default"); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "alerts.yml")), &doc); err != nil {
		t.Fatal(err)
	}
	exported := m.Names()
	seen := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			for _, name := range regexp.MustCompile(`autoglm_[a-z_]+`).FindAllString(r.Expr, -1) {
				seen++
				if !slices.Contains(exported, name) {
					t.Errorf("alert %s uses %s, which is not exported (have %v)", r.Alert, name, exported)
				}
			}
		}
	}
	if seen == 0 {
		t.Error("no alert uses an autoglm metric")
	}
}

// The worker's bucket policy grants object work only.
func TestWorkerPolicyIsLeastPrivilege(t *testing.T) {
	var doc struct {
		Statement []struct {
			Effect string
			Action []string
		}
	}
	if err := json.Unmarshal([]byte(read(t, "worker-bucket-policy.json")), &doc); err != nil {
		t.Fatal(err)
	}
	for _, s := range doc.Statement {
		for _, a := range s.Action {
			if s.Effect == "Allow" && (strings.Contains(a, "*") || strings.Contains(a, "Policy") || strings.Contains(a, "Lifecycle") ||
				strings.Contains(a, "CreateBucket") || strings.Contains(a, "DeleteBucket") || a == "s3:PutBucketVersioning") {
				t.Errorf("the worker's policy allows %s", a)
			}
		}
	}
}
