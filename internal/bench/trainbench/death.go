package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// deathPolicy lets the bench tenant fine-tune the bench's base model
// without an approval.
const deathPolicy = `tenants:
  bench:
    models: [glm-4-bench]
    users: {bench: [submitter]}
    auto_approve_max_requests: 1000000
`

// heartbeatTimeout is the nodes' AUTOGLM_HEARTBEAT_TIMEOUT: how long a
// silent training attempt is given before Temporal retries it.
const heartbeatTimeout = 10 * time.Second

// resumeAfterDeath measures, on the real stack (the Temporal dev server,
// MinIO, a control-plane worker and two node workers, each training with
// the test trainer), the time from a SIGKILL of the node training a job
// to the job's next attempt starting on the other node, as the history
// records that start; the job then resumes from its newest checkpoint.
// It returns that time and the step the job resumed from.
func resumeAfterDeath(ctx context.Context, st *devstack.Stack, root, dir, tt, data string) (time.Duration, int, error) {
	exe := filepath.Join(dir, "autoglm")
	build := exec.CommandContext(ctx, "go", "build", "-o", exe, "./starter")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("building autoglm: %v\n%s", err, out)
	}
	pub, priv, err := assertion.GenerateKey()
	if err != nil {
		return 0, 0, err
	}
	pol := filepath.Join(dir, "death-policy.yaml")
	if err := os.WriteFile(pol, []byte(deathPolicy), 0o644); err != nil {
		return 0, 0, err
	}
	env := append(os.Environ(), st.Env(bucket)...)
	env = append(env, "AUTOGLM_POLICY_FILE="+pol, "AUTOGLM_ASSERTION_PUBLIC_KEYS="+assertion.EncodePublic(pub),
		"AUTOGLM_LLM_BASE_URL=http://127.0.0.1:9/v1", "AUTOGLM_MODELS=glm-4-bench", "AUTOGLM_LOG_LEVEL=warn",
		"AUTOGLM_HEARTBEAT_TIMEOUT="+heartbeatTimeout.String(),
		"AUTOGLM_TRAINER_COMMAND="+tt, "AUTOGLM_TRAINER_INTERVAL=2s", "AUTOGLM_TRAINER_SAVE_STEPS=100000",
		"TESTTRAINER_STEP_DELAY=10ms")
	start := func(name, role string) (*exec.Cmd, error) {
		cmd := exec.Command(exe, "worker")
		cmd.Env = append(env, "AUTOGLM_NODE="+name, "AUTOGLM_WORKER_ROLE="+role, "AUTOGLM_TRAINER_DIR="+filepath.Join(dir, name))
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		return cmd, cmd.Start()
	}
	procs := map[string]*exec.Cmd{}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
			_ = p.Wait()
		}
	}()
	for name, role := range map[string]string{"bench-control": "control", "bench-node-a": "node", "bench-node-b": "node"} {
		cmd, err := start(name, role)
		if err != nil {
			return 0, 0, err
		}
		procs[name] = cmd
	}

	tc, err := deathClients(ctx, st)
	if err != nil {
		return 0, 0, err
	}
	defer tc.Temporal.Close()
	tc.Signer = assertion.NewSigner(priv)
	// The nodes announce themselves within seconds of their start;
	// dispatch refuses (and retries) until one has.
	in, err := tc.Submit(ctx, taskclient.SubmitRequest{Tenant: "bench", Submitter: "bench", Model: "glm-4-bench", File: data,
		FineTune: &task.FineTune{Seed: 5, Hyperparameters: task.Hyperparameters{NEpochs: task.Number(3), BatchSize: task.Number(8)}}})
	if err != nil {
		return 0, 0, err
	}
	// Kill the node once it has trained past a few checkpoints.
	var victim string
	for victim == "" {
		s, err := tc.Status(ctx, in.ID)
		if err != nil {
			return 0, 0, err
		}
		if s.State.Final() {
			return 0, 0, fmt.Errorf("job %s ended (%s) before the kill: train longer", in.ID, s.State)
		}
		if _, ok := procs[s.Node]; ok && s.FineTune != nil && s.FineTune.Step >= 300 {
			victim = s.Node
			break
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	killed := time.Now()
	if err := procs[victim].Process.Kill(); err != nil {
		return 0, 0, err
	}
	_ = procs[victim].Wait()
	delete(procs, victim)
	res, err := tc.Wait(ctx, in.ID)
	if err != nil {
		return 0, 0, err
	}
	final, err := tc.Status(ctx, in.ID)
	if err != nil {
		return 0, 0, err
	}
	if res.State != task.Completed || final.Node == victim || final.FineTune == nil || final.FineTune.ResumedFrom == 0 {
		return 0, 0, fmt.Errorf("job %s after the kill of %s: %+v, %+v; want COMPLETED on the other node, resumed from a checkpoint", in.ID, victim, res, final.FineTune)
	}
	started, err := lastTrainStart(ctx, tc.Temporal, in.ID)
	if err != nil {
		return 0, 0, err
	}
	return started.Sub(killed), final.FineTune.ResumedFrom, nil
}

// lastTrainStart is when the last attempt of the job's Train started, as
// the history records it (the started event of an activity that was
// retried is its last attempt's).
func lastTrainStart(ctx context.Context, tc client.Client, id string) (time.Time, error) {
	it := tc.GetWorkflowHistory(ctx, task.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	train := map[int64]bool{}
	var started time.Time
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return started, err
		}
		switch {
		case e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == "Train":
			train[e.GetEventId()] = true
		case train[e.GetActivityTaskStartedEventAttributes().GetScheduledEventId()]:
			started = e.GetEventTime().AsTime()
		}
	}
	if started.IsZero() {
		return started, fmt.Errorf("job %s: no Train start in its history", id)
	}
	return started, nil
}

func deathClients(ctx context.Context, st *devstack.Stack) (*taskclient.Client, error) {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	tc, err := client.DialContext(ctx, client.Options{HostPort: st.TemporalAddress, Namespace: st.Namespace, Logger: logging.NewSDK(log)})
	if err != nil {
		return nil, err
	}
	store, err := storage.Open(ctx, storage.Config{Driver: storage.DriverMinIO, Endpoint: st.S3Endpoint, Bucket: bucket, Insecure: true, AccessKey: st.AccessKey, SecretKey: st.SecretKey})
	if err != nil {
		return nil, err
	}
	return &taskclient.Client{Temporal: tc, Store: store}, nil
}
