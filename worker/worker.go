// Package worker wires a worker process: config -> clients -> register ->
// run. `autoglm worker` runs it. A process runs the control plane (the
// shared task queue's workflows and control-plane activities, a version
// of the control plane's Worker Deployment), a node (its own node queue
// and its models' queues, for inference, announced in the bucket so
// dispatch can find it), or both (AUTOGLM_WORKER_ROLE).
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/sync/errgroup"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/metrics"
	"github.com/autoglm-flow/autoglm-flow/internal/setup"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// StopTimeout is how long a stopping worker gives running activities to
// record their checkpoint and return.
const StopTimeout = 30 * time.Second

// heartbeatEvery bounds how long the SDK holds back an activity's
// heartbeat. Cancel and pause reach a running inference only through a
// heartbeat's answer, and the SDK's own bound is 0.8 x HeartbeatTimeout
// (48 s for the default minute), which would leave a cancelled batch
// running for most of a minute.
const heartbeatEvery = 2 * time.Second

// announceEvery is how often the node record is rewritten; it must be well
// under activities.NodeStaleAfter.
const announceEvery = 10 * time.Second

// Run runs a worker until ctx ends, then stops it gracefully.
func Run(ctx context.Context, cfg config.Config, log *logrus.Logger) error {
	log.WithField("config", cfg.String()).Info("starting worker")
	trusted, err := assertion.ParsePublicKeys(cfg.AssertionKeys)
	if err != nil {
		return fmt.Errorf("worker: AUTOGLM_ASSERTION_PUBLIC_KEYS: %w", err)
	}
	if len(trusted) == 0 {
		log.Warn("no AUTOGLM_ASSERTION_PUBLIC_KEYS: every task start and every approve, reject, cancel, pause, resume and set-priority will be refused")
	}
	workflows.SetAssertionKeys(trusted)
	breakGlass, err := assertion.ParsePublicKeys(cfg.BreakGlassKeys)
	if err != nil {
		return fmt.Errorf("worker: AUTOGLM_BREAK_GLASS_PUBLIC_KEYS: %w", err)
	}
	workflows.SetBreakGlassKeys(breakGlass)
	copts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		stop, err := profileCPU(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	m, err := metrics.New()
	if err != nil {
		return err
	}
	copts.MetricsHandler = m.SDK
	tc, err := client.DialContext(ctx, copts)
	if err != nil {
		return fmt.Errorf("worker: connecting to Temporal at %s: %w", copts.HostPort, err)
	}
	defer tc.Close()
	if err := checkNamespace(ctx, tc, copts.Namespace, log); err != nil {
		return err
	}
	if err := m.RegisterTasks(tc, cmp.Or(copts.Namespace, client.DefaultNamespace)); err != nil {
		return err
	}

	acts, err := NewActivities(ctx, cfg, tc)
	if err != nil {
		return err
	}
	acts.LLM = metrics.Chatter{Next: acts.LLM, App: m.App}
	logSettings, err := LogSettingsFromEnv()
	if err != nil {
		return err
	}
	prepareLogs(ctx, logSettings, tc, acts.Store, log)
	// Wrapped after prepareLogs: lifecycle rules need the driver itself.
	acts.Store = metrics.Store{Store: acts.Store, App: m.App}
	acts.ObserveTraining = func(id string) activities.TrainingObserver { return &metrics.Training{App: m.App, Task: id} }
	runsControl, runsNode := cfg.Polls()
	if runsNode {
		if err := acts.AnnounceStart(ctx); err != nil {
			return fmt.Errorf("worker: announcing node %s: %w", cfg.Node, err)
		}
	}

	taskLogs := &activities.TaskLogs{Store: acts.Store, Temporal: tc, Node: cfg.Node}
	opts := sdkworker.Options{WorkerStopTimeout: StopTimeout, MaxHeartbeatThrottleInterval: heartbeatEvery,
		// Each task's log goes to the bucket as its activities run.
		Interceptors: []interceptor.WorkerInterceptor{taskLogs},
	}
	buildID, err := BuildID(cfg)
	if err != nil {
		return err
	}
	sharedOpts := opts
	sharedOpts.DeploymentOptions = deploymentOptions(cfg, buildID)
	shared := sdkworker.New(tc, task.TaskQueue, sharedOpts)
	shared.RegisterWorkflowWithOptions(workflows.TaskWorkflow, workflow.RegisterOptions{Name: task.WorkflowType, VersioningBehavior: pinned.VersioningBehavior})
	shared.RegisterWorkflowWithOptions(workflows.LogArchiveWorkflow, workflow.RegisterOptions{Name: task.LogArchiveWorkflowType})
	shared.RegisterActivity(acts)
	// The node's queues hold activities only: unversioned.
	nodeOpts := opts
	nodeOpts.MaxConcurrentActivityExecutionSize = max(cfg.MaxPieces, 1)
	node := sdkworker.New(tc, task.NodeQueue(cfg.Node), nodeOpts)
	node.RegisterActivity(acts)
	acts.Namespace = copts.Namespace
	pollers := &modelPollers{tc: tc, opts: nodeOpts, acts: acts, log: log}
	if runsNode {
		if pollers.training, err = newTrainingSlots(opts, cfg.Trainer.Slots, cfg.Trainer.StopTimeout); err != nil {
			return err
		}
	}
	cache, err := registerFleet(shared, node, acts, pollers, cfg.CacheDir)
	if err != nil {
		return err
	}
	if runsNode {
		pollers.served = serveFineTuned(cfg, acts, cache)
	}

	g, gctx := errgroup.WithContext(ctx)
	// Last, once the workers have stopped: the lines of local activities
	// still held for their task's next chunk.
	defer func() {
		if err := taskLogs.Flush(); err != nil {
			log.WithError(err).Warn("task log lines not written at stop")
		}
	}()
	var running []sdkworker.Worker
	var queues []string
	if runsControl {
		running, queues = append(running, shared), append(queues, task.TaskQueue)
	}
	if runsNode {
		running, queues = append(running, node), append(queues, task.NodeQueue(cfg.Node))
	}
	for _, w := range running {
		if err := w.Start(); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		defer w.Stop()
	}
	if runsNode {
		if err := pollers.start(); err != nil {
			return err
		}
		defer pollers.stop()
	}
	log.WithFields(logrus.Fields{"role": cfg.Role, "node": cfg.Node, "queues": queues, "models": acts.Models,
		"deployment": cfg.Deployment, "build_id": buildID}).Info("worker running")
	g.Go(func() error {
		if !runsControl {
			return nil
		}
		// A build that cannot make itself current still serves the tasks
		// pinned to it; the operator promotes it by hand.
		if err := promote(gctx, tc, cfg, buildID, log); err != nil && gctx.Err() == nil {
			log.WithError(err).Warn("this build did not become the current version; run `temporal worker deployment set-current-version`")
		}
		return nil
	})

	if runsNode {
		m.App.NodeLastAnnounce.WithLabelValues(cfg.Node).SetToCurrentTime()
		g.Go(func() error {
			return announce(gctx, acts, log, m.App.NodeLastAnnounce.WithLabelValues(cfg.Node), func(ctx context.Context) {
				syncFineTuned(ctx, pollers, acts, log)
			})
		})
	}
	if cfg.HeapProfile != "" {
		go profilePeakHeap(gctx, cfg.HeapProfile, log)
	}
	if cfg.HealthAddr != "" {
		g.Go(func() error { return serveHealth(gctx, cfg.HealthAddr, tc, m.Handler()) })
	}
	<-gctx.Done()
	log.Info("stopping worker: running pieces record a checkpoint first")
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// NewActivities builds the activities with real clients from cfg.
func NewActivities(ctx context.Context, cfg config.Config, tc client.Client) (*activities.Activities, error) {
	store, err := storage.Open(ctx, cfg.S3)
	if err != nil {
		return nil, fmt.Errorf("worker: opening the bucket: %w", err)
	}
	if err := storage.EnsureBucket(ctx, store); err != nil {
		return nil, fmt.Errorf("worker: preparing bucket %s: %w", cfg.S3.Bucket, err)
	}
	policy := authz.Static(authz.Default())
	if cfg.PolicyFile != "" {
		if policy, err = authz.Load(cfg.PolicyFile); err != nil {
			return nil, err
		}
	}
	_, runsNode := cfg.Polls()
	if cfg.LLM.BaseURL == "" && runsNode {
		return nil, errors.New("worker: AUTOGLM_LLM_BASE_URL is not set: point it at vLLM, SGLang, Ollama or any OpenAI-compatible server (…/v1)")
	}
	lc := llm.New(cfg.LLM)
	models := cfg.Models
	if len(models) == 0 && runsNode {
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if models, err = lc.Models(mctx); err != nil {
			return nil, fmt.Errorf("worker: asking the model server which models it serves (set AUTOGLM_MODELS to skip): %w", err)
		}
	}
	return &activities.Activities{
		Store: store, Policy: policy, LLM: lc, Temporal: tc, Node: cfg.Node, Models: models, Labels: labelsFromEnv(), Capacity: max(cfg.MaxPieces, 1),
		TrainingSlots: cfg.Trainer.Slots,
		Batch: batch.Config{
			Concurrency: cfg.Concurrency, CheckpointInterval: cfg.CheckpointInterval,
			OutageAfter: cfg.Outage.After, ProbeBase: cfg.Outage.ProbeMin, ProbeMax: cfg.Outage.ProbeMax, HandBackAfter: cfg.Outage.HandBack,
		},
		HeartbeatTimeout:    cfg.HeartbeatTimeout,
		PieceRequests:       cfg.PieceRequests,
		ContinueAsNewEvents: cfg.ContinueAsNewEvents,
		NodeStartTimeout:    cfg.NodeStartTimeout,
		Trainer: trainer.Config{
			Command: cfg.Trainer.Command, WorkDir: cfg.Trainer.Dir, Interval: cfg.Trainer.Interval,
			SaveSteps: cfg.Trainer.SaveSteps, MaxKeep: cfg.Trainer.MaxKeep, StopTimeout: cfg.Trainer.StopTimeout,
		},
	}, nil
}

// announce rewrites the node record on a clock, when it changed; before
// each, tick runs (the fine-tuned models' sync), first at once.
func announce(ctx context.Context, acts *activities.Activities, log *logrus.Logger, last prometheus.Gauge, tick func(context.Context)) error {
	t := time.NewTicker(announceEvery)
	defer t.Stop()
	tick(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			tick(ctx)
			err := acts.Announce(ctx)
			switch {
			case err == nil:
				last.SetToCurrentTime()
			case ctx.Err() == nil:
				log.WithError(err).Warn("announcing node")
			}
		}
	}
}

// serveHealth answers /healthz with 200 while Temporal answers, and
// serves /metrics.
func serveHealth(ctx context.Context, addr string, tc client.Client, metricsHandler http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := tc.CheckHealth(r.Context(), &client.CheckHealthRequest{}); err != nil {
			http.Error(w, "temporal: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// checkNamespace refuses to run on a namespace that does not exist or
// lacks the search attributes: every task would fail at its first state
// change. A worker whose credentials may not list them (a cloud API key
// without operator rights) runs on, saying so.
func checkNamespace(ctx context.Context, tc client.Client, namespace string, log *logrus.Logger) error {
	namespace = cmp.Or(namespace, client.DefaultNamespace)
	err := setup.Ready(ctx, tc, namespace)
	var nr *setup.NotReadyError
	switch {
	case errors.As(err, &nr):
		return fmt.Errorf("worker: %w", err)
	case err != nil:
		log.WithError(err).Warn("could not check the namespace's search attributes; run `autoglm setup` if tasks fail to set TaskState")
	}
	return nil
}
