// Package cluster starts and stops the local Temporal cluster that `make
// cluster`, tests/cluster and the cluster benchmarks run on, from real
// parts: PostgreSQL 15 initdb'd into the cluster's folder, Temporal's
// schema set up by its SQL tool, Temporal server v1.29.1 as one process
// per service (frontend, matching, worker, and two history processes
// sharing the shards) from one config, versitygw as the bucket, and,
// unless told otherwise, `autoglm setup`, the API server and three worker
// nodes with different models and labels. Every port is a free loopback
// port (the frontend's may be fixed); every process is stopped by its PID.
// The settings docker/ shares are in spec.go.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
)

// Options say where the cluster lives and what of it to start.
type Options struct {
	// Dir holds the database, the server's config, the bucket, the keys
	// and the logs (Dir/logs); a cluster started again on the same Dir
	// finds its data.
	Dir string
	// Root is the module's root: docker/ holds the files the cluster
	// shares with it.
	Root string
	// BinDir holds temporal-server, temporal-sql-tool and versitygw
	// (`make tools`).
	BinDir string
	// CLI is the autoglm binary the API server, setup and the worker
	// nodes run as; required unless TemporalOnly.
	CLI string

	// FrontendPort is the frontend's gRPC port; 0 picks a free one.
	FrontendPort int
	// ServerAddr is where the API server listens; a free port if empty.
	ServerAddr string
	// ModelURL is the model server the nodes call (…/v1); if empty the
	// cluster serves every node's models from the test model server, in
	// this process.
	ModelURL string
	// ModelLatency is the test model server's answer time.
	ModelLatency time.Duration

	// TemporalOnly starts PostgreSQL, Temporal and the bucket, and runs
	// neither setup, nor the API server, nor the nodes: for a test that
	// proves setup itself.
	TemporalOnly bool
	// NoNodes runs setup and the API server, but no worker node.
	NoNodes bool
	// NodeEnv is added to every worker node's environment.
	NodeEnv []string
}

// Cluster is a running local cluster.
type Cluster struct {
	Dir             string
	Root            string
	TemporalAddress string
	Namespace       string
	S3Endpoint      string
	Bucket          string
	AccessKey       string
	SecretKey       string
	LogDir          string
	// ServerURL is the API server's (http://host:port); Keys are the
	// policy's users' API keys, by user.
	ServerURL string
	Keys      map[string]string
	// ModelURL is the model server the nodes call; Model is the test
	// model server when the cluster started it.
	ModelURL string
	Model    *testmodel.Server

	opts     Options
	pg       *postgres
	temporal *temporal
	s3       *devstack.Stack
	keys     keys
	procs    []*devstack.Process // API servers, nodes, Prometheus: stopped first
	servers  []Target
	nodes    []Target
}

// Start starts the cluster and returns once each part answers. On error
// nothing is left running.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Dir == "" || opts.Root == "" || opts.BinDir == "" {
		return nil, errors.New("cluster: Options.Dir, Root and BinDir are required")
	}
	if opts.CLI == "" && !opts.TemporalOnly {
		return nil, errors.New("cluster: Options.CLI (the autoglm binary) is required")
	}
	for _, b := range []string{TemporalServerBin, TemporalSQLBin, "versitygw"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("cluster: %s is not built in %s: run `make tools`", b, opts.BinDir)
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Root: opts.Root, Namespace: Namespace, Bucket: Bucket, LogDir: filepath.Join(dir, "logs"), opts: opts}
	for _, d := range []string{c.LogDir, filepath.Join(dir, "postgres"), filepath.Join(dir, "temporal")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	if err := allowTraversal(filepath.Join(dir, "postgres")); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.startTemporal(ctx); err != nil {
		return nil, err
	}
	if c.s3, err = devstack.StartVersity(ctx, devstack.Options{Dir: filepath.Join(dir, "s3"), BinDir: opts.BinDir, Buckets: []string{Bucket}}); err != nil {
		return nil, err
	}
	c.S3Endpoint, c.AccessKey, c.SecretKey = c.s3.S3Endpoint, c.s3.AccessKey, c.s3.SecretKey
	if opts.TemporalOnly {
		return c, nil
	}
	if c.keys, err = makeKeys(filepath.Join(dir, "keys")); err != nil {
		return nil, err
	}
	c.Keys = c.keys.api
	if err := c.startModel(); err != nil {
		return nil, err
	}
	if err := c.Setup(ctx); err != nil {
		return nil, err
	}
	addr := opts.ServerAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if c.ServerURL, _, err = c.StartServer(ctx, "server", addr); err != nil {
		return nil, err
	}
	if opts.NoNodes {
		return c, nil
	}
	for _, n := range Nodes {
		if _, err := c.StartNode(ctx, n, c.opts.CLI); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) startTemporal(ctx context.Context) error {
	ports, err := devstack.FreePorts(0)
	if err != nil {
		return err
	}
	if c.pg, err = newPostgres(filepath.Join(c.Dir, "postgres"), c.LogDir, ports[0]); err != nil {
		return err
	}
	fresh, err := c.pg.init(ctx)
	if err != nil {
		return err
	}
	if err := c.pg.start(ctx); err != nil {
		return err
	}
	c.temporal = &temporal{
		bin: filepath.Join(c.opts.BinDir, TemporalServerBin), sqlBin: filepath.Join(c.opts.BinDir, TemporalSQLBin),
		root: filepath.Join(c.Dir, "temporal"), logDir: c.LogDir, pgPort: c.pg.port, password: c.pg.password,
		procs: map[string]*devstack.Process{},
	}
	if err := c.temporal.schema(ctx, fresh); err != nil {
		return err
	}
	dc, err := os.ReadFile(filepath.Join(c.Root, DynamicConfigFile))
	if err != nil {
		return fmt.Errorf("cluster: the dynamic config docker/ and the cluster share: %w", err)
	}
	if err := c.temporal.writeConfig(dc, c.opts.FrontendPort); err != nil {
		return err
	}
	c.TemporalAddress = c.temporal.address()
	return c.temporal.startAll(ctx)
}

func (c *Cluster) startModel() error {
	c.ModelURL = c.opts.ModelURL
	if c.ModelURL != "" {
		return nil
	}
	c.Model = testmodel.New(testmodel.Options{Models: Models(), Faults: testmodel.Faults{Latency: c.opts.ModelLatency}})
	if err := c.Model.Start(); err != nil {
		return err
	}
	c.ModelURL = c.Model.URL()
	return nil
}

// Env is the environment that points autoglm's processes, the CLI's
// break-glass path and tests at the cluster, with the store's root
// credentials.
func (c *Cluster) Env() []string {
	env := []string{
		"TEMPORAL_ADDRESS=" + c.TemporalAddress,
		"TEMPORAL_NAMESPACE=" + c.Namespace,
		"AUTOGLM_S3_ENDPOINT=" + c.S3Endpoint,
		"AUTOGLM_S3_BUCKET=" + c.Bucket,
		"AUTOGLM_S3_ACCESS_KEY=" + c.AccessKey,
		"AUTOGLM_S3_SECRET_KEY=" + c.SecretKey,
		"AUTOGLM_S3_INSECURE=true",
		// versitygw: see the README's Stores table.
		"AUTOGLM_S3_STAT_BEFORE_REPLACE=true",
		"AUTOGLM_RETENTION=off",
	}
	if c.keys.policy != "" {
		env = append(env, "AUTOGLM_POLICY_FILE="+c.keys.policy, "AUTOGLM_ASSERTION_PUBLIC_KEYS="+c.keys.public)
	}
	if c.ModelURL != "" {
		env = append(env, "AUTOGLM_LLM_BASE_URL="+c.ModelURL)
	}
	return env
}

// AssertionKeyFile is the file holding the key the API server signs
// assertions with; the nodes trust its public half.
func (c *Cluster) AssertionKeyFile() string { return c.keys.private }

// Process is a running Temporal service's process, by Service name, or
// "postgres".
func (c *Cluster) Process(name string) *devstack.Process {
	if name == "postgres" {
		return c.pg.proc
	}
	return c.temporal.procs[name]
}

// Kill sends SIGKILL to a Temporal service's process (by Service name)
// and waits until it is gone.
func (c *Cluster) Kill(name string) error {
	p := c.temporal.procs[name]
	if p == nil {
		return fmt.Errorf("cluster: no Temporal service %q", name)
	}
	p.Kill()
	return nil
}

// StartService starts a Temporal service again, with the ports it had,
// after Kill; the frontend is waited for until it answers.
func (c *Cluster) StartService(ctx context.Context, name string) error {
	if p := c.temporal.procs[name]; p != nil && p.Exited() == nil {
		return fmt.Errorf("cluster: Temporal service %s is running (pid %d)", name, p.PID())
	}
	if _, err := c.temporal.start(name); err != nil {
		return err
	}
	if name == "frontend" {
		return c.temporal.waitFrontend(ctx, 2*time.Minute)
	}
	return nil
}

// RestartPostgres stops PostgreSQL (fast shutdown) and starts it again on
// its port, as a database failover or upgrade would.
func (c *Cluster) RestartPostgres(ctx context.Context) error {
	if err := c.pg.stop(); err != nil {
		return err
	}
	return c.pg.start(ctx)
}

// Stop stops everything by PID, in the order that loses nothing: API
// servers and nodes (which checkpoint), Prometheus, Temporal, the bucket,
// PostgreSQL, the test model server. It is safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		errs = append(errs, c.procs[i].Stop(40*time.Second))
	}
	c.procs = nil
	if c.temporal != nil {
		errs = append(errs, c.temporal.stopAll())
		c.temporal.procs = map[string]*devstack.Process{}
	}
	if c.s3 != nil {
		errs = append(errs, c.s3.Stop())
	}
	if c.pg != nil {
		errs = append(errs, c.pg.stop())
		c.pg.proc = nil
	}
	if c.Model != nil {
		errs = append(errs, c.Model.Close())
		c.Model = nil
	}
	return errors.Join(errs...)
}

// PIDs are the process IDs of everything running.
func (c *Cluster) PIDs() []int {
	var pids []int
	add := func(p *devstack.Process) {
		if p != nil && p.Exited() == nil {
			pids = append(pids, p.PID())
		}
	}
	if c.pg != nil {
		add(c.pg.proc)
	}
	if c.temporal != nil {
		for _, s := range Services {
			add(c.temporal.procs[s.Name])
		}
	}
	if c.s3 != nil {
		pids = append(pids, c.s3.PIDs()...)
	}
	for _, p := range c.procs {
		add(p)
	}
	return pids
}
