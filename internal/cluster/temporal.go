package cluster

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
)

// Binaries the Makefile builds into ./bin for the cluster (`make tools`).
const (
	TemporalServerBin = "temporal-server"
	TemporalSQLBin    = "temporal-sql-tool"
)

// servicePorts are one Temporal process's ports.
type servicePorts struct {
	GRPC, Membership, HTTP, Metrics int
}

// configTemplate is the server's one config for every process. The
// server renders it (sprig) because of the enable-template comment: each
// history process takes its own ports from the environment, every
// process its metrics port.
var configTemplate = template.Must(template.New("cluster.yaml").Delims("[[", "]]").Parse(`# enable-template
# Written by internal/cluster for every Temporal process of the local
# cluster; a process's own ports come from its environment.
log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: [[.Shards]]
  datastores:
    default:
      sql:
        pluginName: postgres12
        databaseName: temporal
        connectAddr: "127.0.0.1:[[.PGPort]]"
        connectProtocol: tcp
        user: [[.PGUser]]
        password: '{{ env "SERVER_SQL_PASSWORD" }}'
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    visibility:
      sql:
        pluginName: postgres12
        databaseName: temporal_visibility
        connectAddr: "127.0.0.1:[[.PGPort]]"
        connectProtocol: tcp
        user: [[.PGUser]]
        password: '{{ env "SERVER_SQL_PASSWORD" }}'
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: '127.0.0.1:{{ env "SERVER_METRICS_PORT" }}'
services:
  frontend:
    rpc:
      grpcPort: [[.Frontend.GRPC]]
      membershipPort: [[.Frontend.Membership]]
      httpPort: [[.Frontend.HTTP]]
      bindOnLocalHost: true
  matching:
    rpc:
      grpcPort: [[.Matching.GRPC]]
      membershipPort: [[.Matching.Membership]]
      bindOnLocalHost: true
  history:
    rpc:
      grpcPort: {{ env "SERVER_HISTORY_GRPC_PORT" }}
      membershipPort: {{ env "SERVER_HISTORY_MEMBERSHIP_PORT" }}
      bindOnLocalHost: true
  worker:
    rpc:
      grpcPort: [[.Worker.GRPC]]
      membershipPort: [[.Worker.Membership]]
      bindOnLocalHost: true
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:[[.Frontend.GRPC]]"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "[[.DynamicConfig]]"
  pollInterval: 10s
`))

// temporal is the cluster's Temporal server: one config, one process per
// Service.
type temporal struct {
	bin, sqlBin string
	root        string // --root: holds config/cluster.yaml
	logDir      string
	pgPort      int
	password    string
	ports       map[string]servicePorts
	procs       map[string]*devstack.Process
}

func (t *temporal) address() string {
	return fmt.Sprintf("127.0.0.1:%d", t.ports["frontend"].GRPC)
}

// writeConfig writes the one config file and a copy of the dynamic
// config; the ports are chosen here, for this run of the cluster.
func (t *temporal) writeConfig(dynamicConfig []byte, frontendPort int) error {
	// All ports in one call, so that no two are the same.
	want := make([]int, 4*len(Services))
	want[0] = frontendPort // Services[0] is the frontend
	ps, err := devstack.FreePorts(want...)
	if err != nil {
		return err
	}
	members, err := membershipPorts(len(Services))
	if err != nil {
		return err
	}
	t.ports = map[string]servicePorts{}
	for i, s := range Services {
		t.ports[s.Name] = servicePorts{GRPC: ps[4*i], Membership: members[i], HTTP: ps[4*i+2], Metrics: ps[4*i+3]}
	}
	dir := filepath.Join(t.root, "config")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	dc := filepath.Join(t.root, "dynamicconfig.yaml")
	if err := os.WriteFile(dc, dynamicConfig, 0o600); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	var b strings.Builder
	if err := configTemplate.Execute(&b, map[string]any{
		"Shards": HistoryShards, "PGPort": t.pgPort, "PGUser": pgUser, "DynamicConfig": dc,
		"Frontend": t.ports["frontend"], "Matching": t.ports["matching"], "Worker": t.ports["worker"],
	}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(b.String()), 0o600)
}

// membershipPorts are n free loopback ports under 32768: the SQL schema
// keeps a member's port in a smallint, and the kernel's free ports are
// above that.
func membershipPorts(n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var out []int
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		held = append(held, l)
		out = append(out, port)
	}
	if len(out) < n {
		return nil, fmt.Errorf("cluster: no %d free loopback ports between 20000 and 32000", n)
	}
	return out, nil
}

// schema creates the two databases (on a new data folder) and brings
// their schemas to the server's version with the SQL tool, as
// docker/temporal-schema.sh does: setup-schema -v 0.0 and update-schema
// change nothing on a current schema.
func (t *temporal) schema(ctx context.Context, fresh bool) error {
	run := func(args ...string) error {
		base := []string{"--plugin", "postgres12", "--ep", "127.0.0.1", "-p", strconv.Itoa(t.pgPort), "-u", pgUser}
		cmd := exec.CommandContext(ctx, t.sqlBin, append(base, args...)...)
		cmd.Env = append(os.Environ(), "SQL_PASSWORD="+t.password)
		cmd.SysProcAttr = devstack.SysProcAttr()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cluster: temporal-sql-tool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, db := range []struct{ name, schema string }{
		{"temporal", "postgresql/v12/temporal"},
		{"temporal_visibility", "postgresql/v12/visibility"},
	} {
		if fresh {
			if err := run("--db", db.name, "create-database"); err != nil {
				return err
			}
		}
		if err := run("--db", db.name, "setup-schema", "-v", "0.0"); err != nil {
			return err
		}
		if err := run("--db", db.name, "update-schema", "--schema-name", db.schema); err != nil {
			return err
		}
	}
	return nil
}

// start starts the service's process from the one config; name is a
// Service's Name.
func (t *temporal) start(name string) (*devstack.Process, error) {
	var svc Service
	for _, s := range Services {
		if s.Name == name {
			svc = s
		}
	}
	if svc.Name == "" {
		return nil, fmt.Errorf("cluster: no Temporal service %q", name)
	}
	ps := t.ports[name]
	env := []string{"SERVER_SQL_PASSWORD=" + t.password, "SERVER_METRICS_PORT=" + strconv.Itoa(ps.Metrics)}
	if svc.Role == "history" {
		env = append(env, "SERVER_HISTORY_GRPC_PORT="+strconv.Itoa(ps.GRPC), "SERVER_HISTORY_MEMBERSHIP_PORT="+strconv.Itoa(ps.Membership))
	}
	p, err := devstack.StartProcess(devstack.ProcessOptions{
		Name: "temporal " + name, Bin: t.bin, Env: env, LogPath: filepath.Join(t.logDir, "temporal-"+name+".log"),
		Args: []string{"--root", t.root, "--config", "config", "--env", "cluster", "--allow-no-auth", "start", "--service", svc.Role},
	})
	if err != nil {
		return nil, err
	}
	t.procs[name] = p
	return p, nil
}

// startAll starts every service and waits until the frontend answers for
// the system namespace. The first process writes the cluster's metadata
// into a new database; started together, two of them race to write it and
// the loser exits, so the others start once it is there.
func (t *temporal) startAll(ctx context.Context) error {
	first, err := t.start(Services[0].Name)
	if err != nil {
		return err
	}
	if err := first.WaitFor(ctx, 2*time.Minute, t.hasClusterMetadata); err != nil {
		return err
	}
	for _, s := range Services[1:] {
		if _, err := t.start(s.Name); err != nil {
			return err
		}
	}
	return t.waitFrontend(ctx, 2*time.Minute)
}

// hasClusterMetadata is nil once the database holds the cluster's
// metadata.
func (t *temporal) hasClusterMetadata(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(PostgresBinDir, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(t.pgPort), "-U", pgUser,
		"-d", "temporal", "-tAc", "SELECT count(*) FROM cluster_metadata_info")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+t.password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if strings.TrimSpace(string(out)) == "0" {
		return errors.New("no cluster metadata yet")
	}
	return nil
}

func (t *temporal) waitFrontend(ctx context.Context, limit time.Duration) error {
	return t.procs["frontend"].WaitFor(ctx, limit, func(ctx context.Context) error {
		return devstack.CheckTemporal(ctx, t.address(), "temporal-system")
	})
}

func (t *temporal) stopAll() error {
	var errs []error
	// Frontend first, so that clients see it go before what it calls.
	for _, s := range Services {
		if p := t.procs[s.Name]; p != nil {
			if err := p.Stop(20 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
