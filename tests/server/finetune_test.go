package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// useTestTrainer builds the test trainer (internal/trainer/testtrainer, a
// stand-in that follows the trainer contract: a character-level language
// model trained by gradient descent) and makes it the trainer of the
// workers this suite starts.
func useTestTrainer(e *testenv.Env) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(e.Dir, "bin", "testtrainer")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/autoglm-flow/autoglm-flow/internal/trainer/testtrainer")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the test trainer: %v\n%s", err, out)
	}
	os.Setenv("AUTOGLM_TRAINER_COMMAND", bin)
	os.Setenv("AUTOGLM_TRAINER_DIR", filepath.Join(e.Dir, "training"))
	os.Setenv("AUTOGLM_TRAINER_SAVE_STEPS", "2")
	// A job one test leaves training (ending while the next test runs)
	// must not hold the next test's job in the queue: slots are
	// tests/fleet's subject, not this suite's.
	os.Setenv("AUTOGLM_TRAINING_SLOTS", "4")
	return nil
}

// chatFile writes an OpenAI chat fine-tuning file of n examples.
func chatFile(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		line, _ := json.Marshal(map[string]any{"messages": []map[string]string{
			{"role": "system", "content": "You answer sums in words."},
			{"role": "user", "content": fmt.Sprintf("What is %d plus %d?", i, i+1)},
			{"role": "assistant", "content": fmt.Sprintf("%d plus %d is %d.", i, i+1, 2*i+1)},
		}})
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "train.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A fine-tuning task sent through the server (the API client the CLI
// runs) is screened, auto-approved, trained by the node's test trainer,
// and ends COMPLETED with its model under models/<tenant>/<ft name>/:
// every file the model's manifest lists is in the bucket with its
// sha256, and the status names the model.
func TestFineTuneThroughTheServerPublishesTheModel(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	api := apiclient.New(suite.url, suite.keys["alice"])
	train := chatFile(t, 10) // at most the auto-approve limit of 10
	sub, err := api.FineTune(ctx, taskclient.SubmitRequest{
		Model: "glm-4-test", File: train, ValidationFile: chatFile(t, 10),
		FineTune: &task.FineTune{Suffix: "sums", Seed: 7, Hyperparameters: task.Hyperparameters{NEpochs: task.Number(2), BatchSize: task.Number(4)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "ft:glm-4-test:demo:sums:" + sub.ID
	if sub.Kind != task.KindFineTune || sub.FineTunedModel != want {
		t.Fatalf("submitted %+v; want a %s task whose model is %s", sub, task.KindFineTune, want)
	}
	waitState(t, ctx, sub.ID, task.Completed)

	st, err := api.Status(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	ft := st.FineTune
	if ft == nil || ft.FineTunedModel != want || ft.Step == 0 || ft.Hyperparameters == nil || ft.Hyperparameters.NEpochs != 2 || ft.Hyperparameters.BatchSize != 4 {
		t.Fatalf("fine-tune status %+v", ft)
	}
	// 10 examples, a batch of 4, 2 epochs: the trainer's steps.
	if ft.Epoch < 2 {
		t.Errorf("trained %g epoch(s), want 2", ft.Epoch)
	}
	prefix := task.FineTunedPrefix("demo", want)
	rc, _, err := suite.Store.Get(ctx, prefix+task.CacheMetaName)
	if err != nil {
		t.Fatalf("the model's manifest: %v", err)
	}
	var meta task.CacheMeta
	err = json.NewDecoder(rc).Decode(&meta)
	rc.Close()
	if err != nil || meta.Name != want || len(meta.Files) == 0 {
		t.Fatalf("manifest %+v, %v", meta, err)
	}
	var sawWeights bool
	for _, f := range meta.Files {
		rc, _, err := suite.Store.Get(ctx, prefix+f.Name)
		if err != nil {
			t.Fatalf("model file %s: %v", f.Name, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil || n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
			t.Errorf("model file %s: %d bytes, sha256 %x, %v; manifest says %d, %s", f.Name, n, h.Sum(nil), err, f.Size, f.SHA256)
		}
		sawWeights = sawWeights || f.Name == "model.bin"
	}
	if !sawWeights {
		t.Errorf("the model's files %+v hold no model.bin", meta.Files)
	}
	res, err := api.Wait(ctx, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.FineTunedModel != want || res.Output.Key != prefix+task.CacheMetaName {
		t.Errorf("result %+v", res)
	}
	record(t, ctx, sub.ID, "fine_tuned")
}

// OpenAI's fine-tuning jobs API on the same task: a file uploaded with
// purpose=fine-tune, a job created, retrieved until it succeeds and
// listed, in OpenAI's object shape; a user of another tenant finds
// neither the job nor it in a list.
func TestOpenAIFineTuningJobsRunAsTasks(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	content, err := os.ReadFile(chatFile(t, 10))
	if err != nil {
		t.Fatal(err)
	}
	f := uploadPurpose(t, ctx, "alice", server.FineTunePurpose, content)
	var job server.FineTuningJob
	must(t, ctx, http.StatusOK, "alice", "POST", "/v1/fine_tuning/jobs", map[string]any{
		"model": "glm-4-test", "training_file": f.ID, "suffix": "oa", "seed": 3,
		"method": map[string]any{"type": "supervised", "supervised": map[string]any{"hyperparameters": map[string]any{"n_epochs": 1, "batch_size": "auto"}}},
	}, &job)
	if job.Object != "fine_tuning.job" || !strings.HasPrefix(job.ID, server.FineTuneJobIDPrefix) || job.TrainingFile != f.ID || job.Model != "glm-4-test" {
		t.Fatalf("created %+v", job)
	}
	path := "/v1/fine_tuning/jobs/" + job.ID
	eventually(t, ctx, "the job to succeed", func() (bool, error) {
		must(t, ctx, http.StatusOK, "alice", "GET", path, nil, &job)
		if job.Status == "failed" || job.Status == "cancelled" {
			t.Fatalf("job %s: %+v", job.Status, job.Error)
		}
		return job.Status == "succeeded", nil
	})
	id := strings.TrimPrefix(job.ID, server.FineTuneJobIDPrefix)
	want := "ft:glm-4-test:demo:oa:" + id
	if job.FineTunedModel == nil || *job.FineTunedModel != want || job.FinishedAt == nil || job.Seed != 3 {
		t.Errorf("succeeded job %+v", job)
	}
	// The fine-tuned model is no base for another job: 400, nothing
	// started.
	code, body := call(t, ctx, "alice", "POST", "/v1/fine_tuning/jobs", map[string]any{"model": want, "training_file": f.ID})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "fine-tuning starts from a base model: fine-tune glm-4-test") {
		t.Errorf("a job on the fine-tuned model: %d %s; want 400 naming its base", code, body)
	}
	// "auto" is decided once the examples are counted: a batch of 8.
	if h := job.Method.Supervised.Hyperparameters; h.NEpochs != task.Number(1) || h.BatchSize != task.Number(8) {
		t.Errorf("hyperparameters %+v", h)
	}
	var list server.FineTuningJobList
	must(t, ctx, http.StatusOK, "alice", "GET", "/v1/fine_tuning/jobs?limit=100", nil, &list)
	found := false
	for _, j := range list.Data {
		found = found || j.ID == job.ID
	}
	if list.Object != "list" || !found {
		t.Errorf("alice's list %+v lacks %s", list, job.ID)
	}
	if code, body = call(t, ctx, "alice", "GET", "/v1/batches/"+server.BatchIDPrefix+id, nil); code != http.StatusNotFound {
		t.Errorf("the job read as a batch: %d %s", code, body)
	}
	if code, body = call(t, ctx, "zed", "GET", path, nil); code != http.StatusNotFound {
		t.Errorf("zed of tenant acme reading demo's job: %d %s", code, body)
	}
	must(t, ctx, http.StatusOK, "zed", "GET", "/v1/fine_tuning/jobs", nil, &list)
	for _, j := range list.Data {
		if j.OrganizationID != "acme" {
			t.Errorf("zed's list holds %s of %s", j.ID, j.OrganizationID)
		}
	}
}

// The CLI through the server: `finetune create` and `finetune status`
// with --json and as text; bad flags exit 2; a training file of too few
// examples is refused by screening, which names the rule.
func TestFineTuneCLI(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	env := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["alice"])
	train := chatFile(t, 10)
	if _, code := autoglm(t, ctx, env, "", "finetune", "create", "--file", train, "--model", "glm-4-test", "--epochs", "many"); code != 2 {
		t.Errorf("--epochs many: exit %d, want 2", code)
	}
	out, code := autoglm(t, ctx, env, "", "finetune", "create", "--file", train, "--model", "glm-4-test", "--suffix", "cli", "--epochs", "1", "--seed", "5", "--json")
	var sub server.FineTuneSubmitted
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil || sub.Kind != task.KindFineTune {
		t.Fatalf("finetune create: exit %d, %s", code, out)
	}
	waitState(t, ctx, sub.ID, task.Completed)
	out, code = autoglm(t, ctx, env, "", "finetune", "status", sub.ID, "--json")
	var st server.TaskStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.FineTune == nil || st.FineTune.FineTunedModel != sub.FineTunedModel || st.FineTune.Seed != 5 {
		t.Fatalf("finetune status --json: exit %d, %s", code, out)
	}
	if out, _ = autoglm(t, ctx, env, "", "finetune", "status", sub.ID); !strings.Contains(out, "fine-tuned model: "+sub.FineTunedModel) || !strings.Contains(out, "1 epoch(s)") {
		t.Errorf("finetune status: %s", out)
	}

	out, code = autoglm(t, ctx, env, "", "finetune", "create", "--file", chatFile(t, 4), "--model", "glm-4-test", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("finetune create of 4 examples: exit %d, %s", code, out)
	}
	waitState(t, ctx, sub.ID, task.Failed)
	st = server.TaskStatus{}
	out, _ = autoglm(t, ctx, env, "", "finetune", "status", sub.ID, "--json")
	if json.Unmarshal([]byte(out), &st) != nil || st.LastErrorType != task.InvalidInput || !strings.Contains(st.LastError, "at least 10") {
		t.Errorf("a file of 4 examples: %s", out)
	}
}

// record writes the task's history to AUTOGLM_RECORD_HISTORIES, when set,
// as workflows/testdata/task_<name>.json for the replay tests:
//
//	AUTOGLM_RECORD_HISTORIES=$PWD/workflows/testdata go test -run TestFineTuneThroughTheServer ./tests/server
func record(t *testing.T, ctx context.Context, id, name string) {
	t.Helper()
	dir := os.Getenv("AUTOGLM_RECORD_HISTORIES")
	if dir == "" {
		return
	}
	h := &historypb.History{}
	it := suite.Temporal.GetWorkflowHistory(ctx, task.WorkflowID(id), "", false, 0)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "task_"+name+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Pause, resume and cancel through OpenAI's fine-tuning jobs API, with
// the roles of the task verbs: a paused job is "queued" with its trainer
// stopped, a resumed one "running" again, a cancelled one "cancelled";
// a user of another tenant finds no job to cancel.
func TestOpenAIFineTuningJobPauseResumeCancel(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	// The test trainer's steps take long enough for a job to be caught
	// running (the workers' trainers inherit this environment).
	t.Setenv("TESTTRAINER_STEP_DELAY", "100ms")
	content, err := os.ReadFile(chatFile(t, 10))
	if err != nil {
		t.Fatal(err)
	}
	f := uploadPurpose(t, ctx, "alice", server.FineTunePurpose, content)
	var job server.FineTuningJob
	must(t, ctx, http.StatusOK, "alice", "POST", "/v1/fine_tuning/jobs", map[string]any{
		"model": "glm-4-test", "training_file": f.ID, "hyperparameters": map[string]any{"n_epochs": 50, "batch_size": 1},
	}, &job)
	path := "/v1/fine_tuning/jobs/" + job.ID
	until := func(status string) {
		t.Helper()
		eventually(t, ctx, "the job to be "+status, func() (bool, error) {
			must(t, ctx, http.StatusOK, "alice", "GET", path, nil, &job)
			return job.Status == status, nil
		})
	}
	until("running")
	if code, body := call(t, ctx, "zed", "POST", path+"/cancel", nil); code != http.StatusNotFound {
		t.Errorf("zed of tenant acme cancelling demo's job: %d %s", code, body)
	}
	// Pausing is an operator's, as for any task.
	if code, body := call(t, ctx, "alice", "POST", path+"/pause", nil); code != http.StatusForbidden {
		t.Errorf("alice, a submitter, pausing: %d %s", code, body)
	}
	must(t, ctx, http.StatusOK, "olga", "POST", path+"/pause", nil, &job)
	if job.Status != "queued" {
		t.Errorf("paused job is %s, want queued", job.Status)
	}
	id := strings.TrimPrefix(job.ID, server.FineTuneJobIDPrefix)
	eventually(t, ctx, "the trainer to stop", func() (bool, error) {
		d, err := suite.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
		return err == nil && len(d.GetPendingActivities()) == 0, err
	})
	must(t, ctx, http.StatusOK, "olga", "POST", path+"/resume", nil, &job)
	until("running")
	must(t, ctx, http.StatusOK, "alice", "POST", path+"/cancel", nil, &job)
	until("cancelled")
	if job.FineTunedModel != nil || job.FinishedAt == nil {
		t.Errorf("cancelled job %+v", job)
	}
}
