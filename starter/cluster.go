package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/autoglm-flow/autoglm-flow/internal/cluster"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
)

// clusterInfo is what `autoglm cluster --json` prints once it answers.
type clusterInfo struct {
	Temporal      string            `json:"temporal_address"`
	Namespace     string            `json:"namespace"`
	Server        string            `json:"server"`
	S3            string            `json:"s3_endpoint"`
	Bucket        string            `json:"bucket"`
	Model         string            `json:"model_server"`
	Prometheus    string            `json:"prometheus,omitempty"`
	Keys          map[string]string `json:"key_files"`
	Logs          string            `json:"logs"`
	PIDs          []int             `json:"pids"`
	SecondsToUp   float64           `json:"seconds_to_answer"`
	SecondsToTask float64           `json:"seconds_to_first_task,omitempty"`
}

func (c *cli) clusterCmd() *cobra.Command {
	var dir, serverAddr string
	var temporalPort int
	var prometheus bool
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run a real Temporal cluster on this host until Ctrl-C: PostgreSQL, Temporal's services as processes, versitygw, the API server, three worker nodes",
		Long: `cluster starts, from real parts and on loopback ports:

  - PostgreSQL 15, initdb'd into DIR/postgres (as the postgres user when run
    as root), the Temporal schema set up with temporal-sql-tool;
  - Temporal server ` + cluster.TemporalVersion + ` as five processes from one config:
    frontend, matching, worker, and two history processes sharing ` + fmt.Sprint(cluster.HistoryShards) + ` shards;
  - versitygw as the bucket;
  - ` + "`autoglm setup`" + ` (namespace, search attributes, dynamic config check);
  - the API server, and three worker nodes with different models and
    labels, served by the built-in test model unless AUTOGLM_LLM_BASE_URL
    names a model server;
  - with --prometheus, Prometheus on docker/prometheus.yml and alerts.yml.

The data stays in DIR: run it again and the tasks are still there. Ctrl-C
stops every process by its PID. docker/ describes the same cluster.`,
		Example: `  autoglm cluster
  autoglm cluster --dir /tmp/c --temporal-port 0 --server-addr 127.0.0.1:0 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			bin, err := devstack.BinDir()
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			start := time.Now()
			fmt.Fprintf(os.Stderr, "starting the cluster in %s (logs in %s)\n", dir, filepath.Join(dir, "logs"))
			cl, err := cluster.Start(ctx, cluster.Options{
				Dir: dir, Root: filepath.Dir(bin), BinDir: bin, CLI: self,
				FrontendPort: temporalPort, ServerAddr: serverAddr,
				ModelURL: os.Getenv("AUTOGLM_LLM_BASE_URL"), ModelLatency: 20 * time.Millisecond,
			})
			if err != nil {
				return err
			}
			defer func() {
				fmt.Fprintln(os.Stderr, "stopping the cluster")
				if serr := cl.Stop(); serr != nil && err == nil {
					err = serr
				}
			}()
			info := clusterInfo{
				Temporal: cl.TemporalAddress, Namespace: cl.Namespace, Server: cl.ServerURL, S3: cl.S3Endpoint, Bucket: cl.Bucket,
				Model: cl.ModelURL, Logs: cl.LogDir, Keys: map[string]string{}, SecondsToUp: time.Since(start).Seconds(),
			}
			for user := range cl.Keys {
				info.Keys[user] = cl.KeyFile(user)
			}
			if _, err := os.Stat(cluster.PrometheusBin); err != nil && prometheus && !cmd.Flags().Changed("prometheus") {
				fmt.Fprintln(os.Stderr, "Prometheus is not installed (apt-get install prometheus): the cluster runs without it")
				prometheus = false
			}
			if prometheus {
				p, err := cl.StartPrometheus(ctx, 15*time.Second)
				if err != nil {
					return err
				}
				info.Prometheus = p.URL
			}
			info.PIDs = cl.PIDs()
			if err := c.print(info, describeCluster(info, cl)); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".data/cluster", "where the cluster keeps its data and logs")
	cmd.Flags().IntVar(&temporalPort, "temporal-port", 7233, "the frontend's gRPC port (0: a free one)")
	cmd.Flags().StringVar(&serverAddr, "server-addr", "127.0.0.1:8080", "where the API server listens (port 0: a free one)")
	cmd.Flags().BoolVar(&prometheus, "prometheus", true, "run Prometheus on docker/prometheus.yml too (skipped, saying so, when it is not installed)")
	return cmd
}

func describeCluster(i clusterInfo, cl *cluster.Cluster) string {
	return fmt.Sprintf(`the cluster answers after %.1f s; Ctrl-C stops it
  API server    %s  (keys in %s)
  Temporal      %s  namespace %s  (%d processes: frontend, matching, worker, history-1, history-2)
  S3            http://%s  bucket %s (versitygw)
  model server  %s
  Prometheus    %s
  logs          %s
As a user (alice; bob is a reviewer):
  export AUTOGLM_SERVER=%s AUTOGLM_API_KEY_FILE=%s`,
		i.SecondsToUp, i.Server, filepath.Dir(cl.KeyFile("alice")), i.Temporal, i.Namespace, len(cluster.Services),
		i.S3, i.Bucket, i.Model, i.Prometheus, i.Logs, i.Server, cl.KeyFile("alice"))
}
