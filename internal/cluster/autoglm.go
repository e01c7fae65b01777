package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
)

// keys are the cluster's policy (the default one, with an API key for
// each of its users) and the key the API server signs assertions with.
type keys struct {
	policy, private, public string
	api                     map[string]string // by user
}

// makeKeys writes them into dir once, and reads them back.
func makeKeys(dir string) (keys, error) {
	k := keys{policy: filepath.Join(dir, "policy.yaml"), private: filepath.Join(dir, "assertion.key"), api: map[string]string{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return k, fmt.Errorf("cluster: %w", err)
	}
	if _, err := os.Stat(k.policy); os.IsNotExist(err) {
		_, priv, err := assertion.GenerateKey()
		if err != nil {
			return k, err
		}
		if err := os.WriteFile(k.private, []byte(assertion.EncodePrivate(priv)+"\n"), 0o600); err != nil {
			return k, err
		}
		var users []string
		for tenant, t := range authz.Default().Tenants {
			for user := range t.Users {
				users = append(users, user+"@"+tenant)
			}
		}
		sort.Strings(users)
		var entries []authz.APIKey
		for _, ut := range users {
			user, tenant, _ := strings.Cut(ut, "@")
			key, entry, err := authz.NewAPIKey(user, tenant, "autoglm cluster")
			if err != nil {
				return k, err
			}
			if err := os.WriteFile(filepath.Join(dir, user+".key"), []byte(key+"\n"), 0o600); err != nil {
				return k, err
			}
			entries = append(entries, entry)
		}
		b, err := yaml.Marshal(map[string]any{"api_keys": entries})
		if err != nil {
			return k, err
		}
		if err := os.WriteFile(k.policy, append(authz.DefaultYAML(), b...), 0o600); err != nil {
			return k, err
		}
	}
	b, err := os.ReadFile(k.private)
	if err != nil {
		return k, fmt.Errorf("cluster: %w", err)
	}
	priv, err := assertion.ParsePrivateKey(strings.TrimSpace(string(b)))
	if err != nil {
		return k, fmt.Errorf("cluster: %s: %w", k.private, err)
	}
	k.public = assertion.EncodePublic(assertion.NewSigner(priv).Public())
	files, _ := filepath.Glob(filepath.Join(dir, "*.key"))
	for _, f := range files {
		if f == k.private {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return k, fmt.Errorf("cluster: %w", err)
		}
		k.api[strings.TrimSuffix(filepath.Base(f), ".key")] = strings.TrimSpace(string(b))
	}
	return k, nil
}

// KeyFile is the file holding user's API key.
func (c *Cluster) KeyFile(user string) string {
	return filepath.Join(c.Dir, "keys", user+".key")
}

// Setup runs `autoglm setup` against the cluster, with the dynamic config
// the servers run with; its report goes to logs/setup.log.
func (c *Cluster) Setup(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, c.opts.CLI, "setup", "--dynamic-config", filepath.Join(c.Root, DynamicConfigFile), "--namespace-retention", NamespaceRetention.String())
	cmd.Env = append(os.Environ(), c.Env()...)
	cmd.SysProcAttr = devstack.SysProcAttr()
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(c.LogDir, "setup.log"), out, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: autoglm setup: %v\n%s", err, out)
	}
	return nil
}

// Target is one autoglm process Prometheus scrapes.
type Target struct {
	Name string
	Addr string // host:port of its /metrics
	Proc *devstack.Process
}

// StartServer starts an API server (`autoglm server`) named name on addr
// (a port of 0 picks a free one) and waits until it answers /healthz.
// It returns its URL; Stop stops it.
func (c *Cluster) StartServer(ctx context.Context, name, addr string) (string, *devstack.Process, error) {
	addr, err := freeAddr(addr)
	if err != nil {
		return "", nil, err
	}
	p, err := devstack.StartProcess(devstack.ProcessOptions{
		Name: "autoglm server " + name, Bin: c.opts.CLI, Args: []string{"server", "--addr", addr},
		Env:     append(c.Env(), "AUTOGLM_ASSERTION_PRIVATE_KEY_FILE="+c.keys.private, "AUTOGLM_LOG_LEVEL=warn"),
		LogPath: filepath.Join(c.LogDir, "server-"+name+".log"),
	})
	if err != nil {
		return "", nil, err
	}
	c.procs = append(c.procs, p)
	url := "http://" + addr
	if err := p.WaitFor(ctx, 2*time.Minute, healthz(url)); err != nil {
		return "", nil, err
	}
	c.servers = append(c.servers, Target{Name: name, Addr: addr, Proc: p})
	return url, p, nil
}

// StartNode starts node n as `autoglm worker` from the binary cli, with
// its metrics on a free port, and waits until it answers /healthz: it has
// announced itself and polls its queues. Its build becomes the control
// plane's current version as it starts (AUTOGLM_PROMOTE=always, as in
// `autoglm dev`: the cluster's folder outlives a rebuild); a rollout passes
// AUTOGLM_PROMOTE=never in env and makes the build current with `autoglm
// setup --current-build` (see the README's Worker Versioning).
func (c *Cluster) StartNode(ctx context.Context, n Node, cli string, env ...string) (*devstack.Process, error) {
	addr, err := freeAddr("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p, err := devstack.StartProcess(devstack.ProcessOptions{
		Name: "autoglm worker " + n.Name, Bin: cli, Args: []string{"worker"},
		Env: append(append(append(c.Env(),
			"AUTOGLM_NODE="+n.Name, "AUTOGLM_MODELS="+strings.Join(n.Models, ","), "AUTOGLM_LABELS="+n.Labels,
			"AUTOGLM_HEALTH_ADDR="+addr, "AUTOGLM_LOG_LEVEL=warn", "AUTOGLM_PROMOTE=always"), c.opts.NodeEnv...), env...),
		LogPath: filepath.Join(c.LogDir, "worker-"+n.Name+".log"),
	})
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	if err := p.WaitFor(ctx, 2*time.Minute, healthz("http://"+addr)); err != nil {
		return nil, err
	}
	c.nodes = append(c.nodes, Target{Name: n.Name, Addr: addr, Proc: p})
	return p, nil
}

// Servers and Nodes are the API servers and worker nodes started, the
// stopped ones too.
func (c *Cluster) Servers() []Target { return c.servers }

// Nodes are the worker nodes started, the stopped ones too.
func (c *Cluster) Nodes() []Target { return c.nodes }

func healthz(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %s", resp.Status)
		}
		return nil
	}
}

// freeAddr is addr, with a free port where its port is 0.
func freeAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("cluster: address %q: %w", addr, err)
	}
	n, _ := strconv.Atoi(port)
	ps, err := devstack.FreePorts(n)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(ps[0])), nil
}
