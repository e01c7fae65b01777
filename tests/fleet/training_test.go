package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// testTrainer is the test trainer (internal/trainer/testtrainer, a
// stand-in that follows the trainer contract with a real
// character-level model), built once for the suite.
var testTrainer = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(suite.Dir, "bin", "testtrainer")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/autoglm-flow/autoglm-flow/internal/trainer/testtrainer").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the test trainer: %v\n%s", err, out)
	}
	return bin, nil
})

// training is one test's fine-tuning fleet: a base model of its own (so
// no other test's node takes its jobs), the tenant policy allowing it,
// and a gate file that holds every trainer after each step while it
// exists (TESTTRAINER_GATE).
type training struct {
	model, gate string
	tc          *taskclient.Client
	policy      string // the policy file's path
	key         string // alice's API key
}

func newTraining(t *testing.T) *training {
	t.Helper()
	tr := &training{model: "glm-ft-" + randHex(3), gate: filepath.Join(t.TempDir(), "gate")}
	key, entry, err := authz.NewAPIKey("alice", "fl", "test")
	if err != nil {
		t.Fatal(err)
	}
	tr.key = key
	p := fmt.Sprintf(`tenants:
  fl:
    models: [%s]
    users: {alice: [submitter], olga: [operator], bob: [reviewer]}
    auto_approve_max_requests: 100000
fleet:
  operators: [olga]
api_keys:
  - {user: alice, tenant: fl, sha256: %s}
`, tr.model, entry.SHA256)
	tr.policy = filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(tr.policy, []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AUTOGLM_POLICY_FILE", tr.policy)
	tr.tc = &taskclient.Client{Temporal: suite.Temporal, Store: suite.Store, Signer: suite.Signer}
	return tr
}

// node starts a node serving the test's model that trains with the test
// trainer, slots jobs at once; it saves only when told to (no periodic
// save), so every checkpoint is a stop's.
func (tr *training) node(t *testing.T, short string, slots int) *node {
	t.Helper()
	bin, err := testTrainer()
	if err != nil {
		t.Fatal(err)
	}
	return startNode(t, short, nodeOptions{Models: tr.model, Env: []string{
		"AUTOGLM_TRAINER_COMMAND=" + bin, "AUTOGLM_TRAINER_DIR=" + filepath.Join(t.TempDir(), "training"),
		fmt.Sprintf("AUTOGLM_TRAINING_SLOTS=%d", slots), "AUTOGLM_TRAINER_SAVE_STEPS=100000", "AUTOGLM_TRAINER_INTERVAL=0",
		"AUTOGLM_HEARTBEAT_TIMEOUT=10s", "TESTTRAINER_GATE=" + tr.gate,
	}})
}

func (tr *training) closeGate(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(tr.gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (tr *training) openGate(t *testing.T) {
	t.Helper()
	if err := os.Remove(tr.gate); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// submit starts a fine-tuning job of alice's: the same 10 examples, 2
// epochs, a batch of 8 and seed 11 every time, so every job trains the
// same weights.
func (tr *training) submit(t *testing.T, ctx context.Context) string {
	t.Helper()
	var b strings.Builder
	for i := range 10 {
		line, _ := json.Marshal(map[string]any{"messages": []map[string]string{
			{"role": "user", "content": fmt.Sprintf("What is %d plus %d?", i, i)},
			{"role": "assistant", "content": fmt.Sprintf("%d plus %d is %d.", i, i, 2*i)},
		}})
		b.Write(append(line, '\n'))
	}
	path := filepath.Join(t.TempDir(), "train.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := tr.tc.Submit(ctx, taskclient.SubmitRequest{Tenant: "fl", Submitter: "alice", Model: tr.model, File: path,
		FineTune: &task.FineTune{Seed: 11, Suffix: "t", Hyperparameters: task.Hyperparameters{NEpochs: task.Number(2), BatchSize: task.Number(8)}}})
	if err != nil {
		t.Fatal(err)
	}
	return in.ID
}

// openAI starts an API server on the suite's stack under the test's
// policy and returns a reader of a job through its OpenAI route, GET
// /v1/fine_tuning/jobs/{id}, as alice with her API key.
func (tr *training) openAI(t *testing.T) func(ctx context.Context, id string) server.FineTuningJob {
	t.Helper()
	src, err := authz.Load(tr.policy)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	hs := httptest.NewServer((&server.Server{Tasks: tr.tc, Policy: src, TempDir: t.TempDir(), Log: log}).Handler())
	t.Cleanup(hs.Close)
	return func(ctx context.Context, id string) server.FineTuningJob {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, "GET", hs.URL+"/v1/fine_tuning/jobs/"+server.FineTuneJobIDPrefix+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tr.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var job server.FineTuningJob
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &job) != nil || job.ID != server.FineTuneJobIDPrefix+id {
			t.Fatalf("GET the OpenAI job of %s: %d %s", id, resp.StatusCode, body)
		}
		return job
	}
}

// status waits until the job's status satisfies cond, and returns it.
func (tr *training) status(t *testing.T, ctx context.Context, id, what string, cond func(task.Status) bool) task.Status {
	t.Helper()
	var st task.Status
	eventually(t, ctx, what, func() (bool, error) {
		var err error
		st, err = tr.tc.Status(ctx, id)
		return err == nil && cond(st), nil
	})
	return st
}

// completed waits for the job and returns the sha256 of its published
// model.bin.
func (tr *training) completed(t *testing.T, ctx context.Context, id string) (task.Result, string) {
	t.Helper()
	res, err := tr.tc.Wait(ctx, id)
	if err != nil || res.State != task.Completed {
		t.Fatalf("job %s: %+v, %v; want COMPLETED", id, res, err)
	}
	rc, _, err := suite.Store.Get(ctx, res.Output.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var meta task.CacheMeta
	if err := json.NewDecoder(rc).Decode(&meta); err != nil {
		t.Fatal(err)
	}
	for _, f := range meta.Files {
		if f.Name == "model.bin" {
			return res, f.SHA256
		}
	}
	t.Fatalf("job %s published no model.bin: %+v", id, meta.Files)
	return res, ""
}

// trainSpan is when the job's last Train attempt started and when Train
// completed, as the history has them.
func trainSpan(t *testing.T, ctx context.Context, id string) (started, completed time.Time) {
	t.Helper()
	it := suite.Temporal.GetWorkflowHistory(ctx, task.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	train := map[int64]bool{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			train[e.GetEventId()] = e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() == "Train"
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if train[e.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] {
				started = e.GetEventTime().AsTime()
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if train[e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()] {
				completed = e.GetEventTime().AsTime()
			}
		}
	}
	return started, completed
}

// TestTrainingSlotsQueueTheSecondJob: a node with one training slot
// trains one job at a time, apart from its inference capacity. The
// first job holds the slot (its trainer held at a step by the gate); the
// second waits in the model's training queue, "queued" on the OpenAI
// route, not failed; once the first is done the second runs and
// succeeds.
func TestTrainingSlotsQueueTheSecondJob(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	tr := newTraining(t)
	tr.closeGate(t)
	job := tr.openAI(t)
	n := tr.node(t, "slot", 1)
	eventually(t, ctx, n.name+"'s record to show its training slot", func() (bool, error) {
		rec, err := nodeRecord(ctx, n.name)
		return err == nil && rec.TrainingSlots == 1, nil
	})

	first := tr.submit(t, ctx)
	tr.status(t, ctx, first, "the first job to train on "+n.name, func(st task.Status) bool {
		return st.FineTune != nil && st.FineTune.Step > 0 && st.Node == n.name
	})
	second := tr.submit(t, ctx)
	st := tr.status(t, ctx, second, "the second job to wait for the slot", func(st task.Status) bool {
		return st.State == task.Running && st.FineTune != nil && st.FineTune.WaitingForSlot
	})
	if st.FineTune.Step != 0 {
		t.Fatalf("the second job trained (step %d) while the only slot was taken", st.FineTune.Step)
	}
	eventually(t, ctx, n.name+"'s record to show the slot taken", func() (bool, error) {
		rec, err := nodeRecord(ctx, n.name)
		return err == nil && rec.Training == 1, nil
	})
	if fst, err := tr.tc.Status(ctx, first); err != nil || fst.State != task.Running {
		t.Fatalf("the first job while the second waits: %+v, %v; want RUNNING", fst.State, err)
	}
	eventually(t, ctx, "the OpenAI route to report the second job queued", func() (bool, error) {
		return job(ctx, second).Status == "queued", nil
	})
	if got := job(ctx, first).Status; got != "running" {
		t.Fatalf("the OpenAI route reports the first job, holding the slot, %q; want running", got)
	}

	tr.openGate(t)
	_, a := tr.completed(t, ctx, first)
	// Once the slot is free the second goes on from "queued" to
	// "running" (unless it is done before a poll sees it) and
	// "succeeded", never back.
	seen := []string{"queued"}
	eventually(t, ctx, "the OpenAI route to report the second job succeeded", func() (bool, error) {
		if s := job(ctx, second).Status; s != seen[len(seen)-1] {
			seen = append(seen, s)
		}
		return seen[len(seen)-1] == "succeeded", nil
	})
	if got := strings.Join(seen, " "); got != "queued running succeeded" && got != "queued succeeded" {
		t.Fatalf("the OpenAI route reported the second job %s after the first ended; want queued, running, succeeded", got)
	}
	_, b := tr.completed(t, ctx, second)
	_, firstDone := trainSpan(t, ctx, first)
	secondStarted, _ := trainSpan(t, ctx, second)
	if secondStarted.Before(firstDone) {
		t.Errorf("the second job's training started at %s, before the first's ended at %s: two jobs on one slot", secondStarted, firstDone)
	}
	if a != b {
		t.Errorf("the two jobs trained different weights: %s and %s", a, b)
	}
}

// TestDrainMidTrainingResumesOnAnotherNode: the node training a job is
// drained (`autoglm nodes drain`) while its trainer is held at a step.
// The trainer is told to save (SIGTERM), that checkpoint is uploaded and
// committed, the job goes back to the model's training queue, and the
// other node resumes it from that very step; it succeeds with weights
// byte-identical to an uninterrupted run with the same seed.
func TestDrainMidTrainingResumesOnAnotherNode(t *testing.T) {
	ctx := testCtx(t, 6*time.Minute)
	tr := newTraining(t)
	tr.closeGate(t)
	nodes := map[string]*node{}
	for _, short := range []string{"dra", "drb"} {
		n := tr.node(t, short, 1)
		nodes[n.name] = n
	}

	id := tr.submit(t, ctx)
	st := tr.status(t, ctx, id, "the job to train on a node", func(st task.Status) bool {
		return st.FineTune != nil && st.FineTune.Step > 0 && nodes[st.Node] != nil
	})
	drained, held := st.Node, st.FineTune.Step
	var other string
	for name := range nodes {
		if name != drained {
			other = name
		}
	}
	if _, code := runCLI(t, ctx, "nodes", "drain", "--as", "olga", drained); code != 0 {
		t.Fatalf("nodes drain %s: exit %d", drained, code)
	}
	t.Logf("drained %s with its trainer held at step %d", drained, held)
	tr.status(t, ctx, id, "the job to resume on "+other, func(st task.Status) bool { return st.Node == other })
	tr.openGate(t)
	res, drainedRun := tr.completed(t, ctx, id)

	// The only checkpoint is the drain's (no periodic save): taken at the
	// step the trainer was held at, and the one the job resumed from.
	cp := &trainer.Checkpoints{Store: suite.Store, Tenant: "fl", TaskID: id}
	recs, err := cp.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var saved []int
	for _, r := range recs {
		if !r.Final {
			saved = append(saved, r.Step)
		}
	}
	if len(saved) != 1 || saved[0] != held {
		t.Fatalf("checkpoints committed at steps %v; want the drain's alone, at step %d", saved, held)
	}
	final, err := tr.tc.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if final.FineTune == nil || final.FineTune.ResumedFrom != held || final.Node != other {
		t.Fatalf("the job ended on %s resumed from step %+v; want %s, from the drained checkpoint's step %d", final.Node, final.FineTune, other, held)
	}
	t.Logf("resumed on %s from step %d; %+v", other, held, res.Reason)

	// The same job, uninterrupted, on the node still taking work.
	_, plainRun := tr.completed(t, ctx, tr.submit(t, ctx))
	if drainedRun != plainRun {
		t.Fatalf("model.bin after the drain has sha256 %s; the uninterrupted run's is %s", drainedRun, plainRun)
	}
}
