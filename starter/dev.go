package main

import (
	"context"
	"errors"
	"fmt"
	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/worker"
)

// localFlags choose where the local stack keeps its data and which ports
// it takes: Temporal's usual ones by default, so the Web UI is where the
// Temporal docs say it is.
type localFlags struct {
	dir                                   string
	temporalPort, uiPort, s3Port, conPort int
	serverAddr                            string
	logLevel                              string
}

func (f *localFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.dir, "dir", ".data", "where Temporal, MinIO and the logs keep their files")
	fl.IntVar(&f.temporalPort, "temporal-port", 7233, "Temporal's gRPC port")
	fl.IntVar(&f.uiPort, "ui-port", 8233, "the Temporal Web UI's port")
	fl.IntVar(&f.s3Port, "s3-port", 9000, "MinIO's S3 port")
	fl.IntVar(&f.conPort, "console-port", 9001, "the MinIO console's port")
	fl.StringVar(&f.logLevel, "log-level", "warn", "the worker's log level")
	fl.StringVar(&f.serverAddr, "server-addr", "127.0.0.1:8080", "where the API server listens")
}

// local is a running local stack with the test model server (when no
// model server is configured) and a worker.
type local struct {
	dir    string
	stack  *devstack.Stack
	model  *testmodel.Server
	worker chan error
	stop   context.CancelFunc
	// server is the API server's URL; keys are the dev API keys by user.
	server    string
	keys      map[string]string
	serverErr chan error
}

func startLocal(ctx context.Context, f localFlags) (*local, error) {
	bin, err := devstack.BinDir()
	if err != nil {
		return nil, err
	}
	fmt.Println("starting the local stack: Temporal dev server and MinIO (logs in " + filepath.Join(f.dir, "logs") + ")")
	st, err := devstack.Start(ctx, devstack.Options{
		Dir: f.dir, BinDir: bin, UI: true,
		TemporalPort: f.temporalPort, UIPort: f.uiPort, S3Port: f.s3Port, ConsolePort: f.conPort,
		Buckets: []string{config.DefaultBucket},
	})
	if err != nil {
		return nil, err
	}
	l := &local{stack: st, dir: f.dir}
	for _, kv := range st.Env(config.DefaultBucket) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	if err := devAssertionKey(f.dir); err != nil {
		l.close()
		return nil, err
	}
	if l.keys, err = devKeys(f.dir); err != nil {
		l.close()
		return nil, err
	}
	if os.Getenv("AUTOGLM_LLM_BASE_URL") == "" {
		l.model = testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: 20 * time.Millisecond}})
		if err := l.model.Start(); err != nil {
			l.close()
			return nil, err
		}
		os.Setenv("AUTOGLM_LLM_BASE_URL", l.model.URL())
		fmt.Println("using the built-in test model; set AUTOGLM_LLM_BASE_URL to use vLLM, SGLang, Ollama or any OpenAI-compatible server")
	}
	cfg, err := config.FromEnv()
	if err != nil {
		l.close()
		return nil, err
	}
	// The dev stack's folder outlives a rebuild: this build takes new
	// tasks, and tasks pinned to an older build wait for it.
	if os.Getenv("AUTOGLM_PROMOTE") == "" {
		cfg.Promote = config.PromoteAlways
	}
	log, err := logging.New(os.Stderr, "text", f.logLevel)
	if err != nil {
		l.close()
		return nil, err
	}
	wctx, stop := context.WithCancel(ctx)
	l.stop, l.worker = stop, make(chan error, 1)
	go func() { l.worker <- worker.Run(wctx, cfg, log) }()
	srv, closeClients, err := newAPIServer(wctx, cfg, log)
	if err != nil {
		l.close()
		return nil, err
	}
	ready := make(chan string, 1)
	l.serverErr = make(chan error, 1)
	go func() {
		defer closeClients()
		l.serverErr <- serveAPI(wctx, f.serverAddr, srv, log, ready)
		close(ready)
	}()
	addr, ok := <-ready
	if !ok {
		err := <-l.serverErr
		l.serverErr <- err
		l.close()
		return nil, fmt.Errorf("the API server did not start: %w", err)
	}
	l.server = "http://" + addr
	return l, nil
}

// close stops the worker, then the model server, then the servers by PID.
func (l *local) close() error {
	var errs []error
	if l.stop != nil {
		l.stop()
		errs = append(errs, <-l.worker)
	}
	if l.serverErr != nil {
		errs = append(errs, <-l.serverErr)
	}
	if l.model != nil {
		errs = append(errs, l.model.Close())
	}
	errs = append(errs, l.stack.Stop())
	return errors.Join(errs...)
}

func (l *local) describe() string {
	return fmt.Sprintf(`  API server    %s  (dev keys in %s)
  Temporal      %s  (Web UI %s)
  MinIO         http://%s  (console %s, user %s)
  model server  %s
In another shell, as a user (alice; bob is a reviewer):
  export AUTOGLM_SERVER=%s AUTOGLM_API_KEY_FILE=%s
As an operator on this host (break-glass: Temporal and the bucket directly):
  export AUTOGLM_SERVER=direct TEMPORAL_ADDRESS=%s AUTOGLM_S3_ENDPOINT=%s AUTOGLM_S3_ACCESS_KEY=%s AUTOGLM_S3_SECRET_KEY=%s AUTOGLM_ASSERTION_PRIVATE_KEY_FILE=%s`,
		l.server, filepath.Join(l.dir, "keys"), l.stack.TemporalAddress, l.stack.UIURL, l.stack.S3Endpoint, l.stack.ConsoleURL, l.stack.AccessKey,
		os.Getenv("AUTOGLM_LLM_BASE_URL"),
		l.server, keyFile(l.dir, "alice"),
		l.stack.TemporalAddress, l.stack.S3Endpoint, l.stack.AccessKey, l.stack.SecretKey, os.Getenv("AUTOGLM_ASSERTION_PRIVATE_KEY_FILE"))
}

func (c *cli) devCmd() *cobra.Command {
	var f localFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the local stack (Temporal + Web UI, MinIO, a worker, the test model) until Ctrl-C",
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := startLocal(cmd.Context(), f)
			if err != nil {
				return err
			}
			fmt.Println("the local stack is running; Ctrl-C stops it")
			fmt.Println(l.describe())
			select {
			case <-cmd.Context().Done():
			case err := <-l.worker:
				l.worker <- err
			}
			fmt.Println("\nstopping the local stack")
			return l.close()
		},
	}
	f.add(cmd)
	return cmd
}

func (c *cli) demoCmd() *cobra.Command {
	var f localFlags
	var n int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run one batch task end to end on the local stack, with an approval, and show where everything is",
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			ctx := cmd.Context()
			l, err := startLocal(ctx, f)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, l.close()) }()
			fmt.Println(l.describe())
			return c.runDemo(ctx, l, f.dir, n)
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&n, "requests", 200, "how many requests the demo batch holds")
	cmd.AddCommand(c.demoFinetuneCmd())
	return cmd
}

func (c *cli) runDemo(ctx context.Context, l *local, dir string, n int) error {
	file := filepath.Join(dir, "demo", "batch.jsonl")
	if err := writeDemoBatch(file, n); err != nil {
		return err
	}
	if l.keys["alice"] == "" || l.keys["bob"] == "" {
		return fmt.Errorf("the demo runs as alice and bob with their dev keys, which %s has not: run it without AUTOGLM_POLICY_FILE", dir)
	}
	// alice and bob are users: they talk to the API server with their
	// keys, as `autoglm` does with AUTOGLM_SERVER set.
	alice, bob := apiclient.New(l.server, l.keys["alice"]), apiclient.New(l.server, l.keys["bob"])
	// Submit refuses a model no live node serves: wait, as an operator on
	// this host would, for the worker just started to announce itself.
	tc, err := c.client(ctx)
	if err != nil {
		return err
	}
	model, err := taskclient.FirstModel(file)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = tc.WaitServed(wctx, model)
	cancel()
	if err != nil {
		return err
	}
	in, err := alice.Submit(ctx, taskclient.SubmitRequest{Tenant: c.tenant, File: file}, nil)
	if err != nil {
		return err
	}
	fmt.Printf("\nalice submitted task %s through the API server %s: %d requests from %s (2 of them malformed on purpose)\n", in.ID, l.server, n+2, file)
	if err := waitForState(ctx, alice, in.ID, task.AwaitingApproval); err != nil {
		return err
	}
	fmt.Println("it is over the tenant's auto-approve limit, so it waits for a reviewer; bob approves it with his key:")
	fmt.Printf("  AUTOGLM_API_KEY_FILE=%s autoglm approve %s\n\n", keyFile(dir, "bob"), in.ID)
	if _, err := bob.Decide(ctx, in.ID, task.UpdateApprove, server.DecisionBody{Reason: "demo approval"}); err != nil {
		return err
	}
	st, err := c.follow(ctx, tclient.Server{API: alice}, in.ID)
	if err != nil {
		return err
	}
	if err := c.printEnding(st); err != nil {
		return err
	}
	// The checks look in the bucket and at Temporal directly, as an
	// operator on this host would.
	if _, err := c.client(ctx); err != nil {
		return err
	}
	return c.checkDemo(ctx, l, in.ID)
}

// checkDemo shows that what the demo claims holds: the objects are in
// MinIO and the Temporal server lists the workflow.
func (c *cli) checkDemo(ctx context.Context, l *local, id string) error {
	st, err := c.tc.Status(ctx, id)
	if err != nil {
		return err
	}
	fmt.Println("\nin MinIO:")
	for _, a := range st.Artifacts {
		info, err := c.tc.Store.Stat(ctx, a.Key)
		if err != nil {
			return fmt.Errorf("demo: %s is not in the bucket: %w", a.URI(), err)
		}
		fmt.Printf("  %-14s %s (%d bytes)\n", a.Key[strings.LastIndex(a.Key, "/")+1:], a.URI(), info.Size)
	}
	resp, err := c.tc.Temporal.ListWorkflow(ctx, listRequest("WorkflowId = 'task-"+id+"'"))
	if err != nil || len(resp.Executions) != 1 {
		return fmt.Errorf("demo: the Temporal server does not list task-%s: %v", id, err)
	}
	fmt.Printf("\nthe Temporal server lists workflow task-%s (%s)\n", id, resp.Executions[0].Status)
	fmt.Printf("  Web UI: %s/namespaces/%s/workflows/task-%s\n", l.stack.UIURL, l.stack.Namespace, id)
	fmt.Printf("\ndemo done. The data stays in %s: `make dev` brings the stack back to browse it.\n", l.dir)
	return nil
}

// writeDemoBatch writes an OpenAI Batch file of n requests and two
// malformed lines, which end up in errors.jsonl with their line numbers.
func writeDemoBatch(path string, n int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	topics := []string{"durable execution", "GPU scheduling", "OpenAI Batch files", "S3 conditional writes", "approval workflows"}
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"custom_id":"demo-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"In one sentence, what is %s? (%d)"}]}}`+"\n", i, topics[i%len(topics)], i)
		if i == n/2 {
			b.WriteString(`{"custom_id":"demo-broken","method":"POST"` + "\n")
			b.WriteString(`{"custom_id":"demo-wrong-url","method":"POST","url":"/v1/embeddings","body":{"model":"glm-4-test","input":"x"}}` + "\n")
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func keyFile(dir, user string) string {
	return filepath.Join(dir, "keys", user+".key")
}

func listRequest(query string) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{Namespace: os.Getenv("TEMPORAL_NAMESPACE"), Query: query}
}

// waitForState follows the task's changes until it reaches state or ends.
func waitForState(ctx context.Context, api *apiclient.Client, id string, state task.State) error {
	var after int64
	for {
		cs, err := api.Changes(ctx, id, after, 30*time.Second)
		if err != nil {
			return err
		}
		for _, e := range cs.Changes {
			after = e.Seq
			if e.State == state {
				return nil
			}
		}
		if cs.Final {
			return fmt.Errorf("%w: task %s ended before it was %s", errNotCompleted, id, state)
		}
	}
}
