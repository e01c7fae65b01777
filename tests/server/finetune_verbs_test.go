package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// The fine-tuning verbs of the CLI through the server, as JSON and as
// text: watch to the end (exit 0), list, events (the transitions and the
// loss curve, one metrics event per step the trainer logged), checkpoints
// (the final model and the kept ones); on a long job, watch shows the
// training while it runs, pause is an operator's (a submitter exits 3),
// resume goes on, cancel ends it and the watch exits 6. A batch task is
// not a fine-tuning task (exit 4).
func TestFineTuneCLIVerbs(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	alice := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["alice"])
	olga := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["olga"])

	// One epoch in batches of 8: a checkpoint every 2 steps
	// (AUTOGLM_TRAINER_SAVE_STEPS), then the final model.
	out, code := autoglm(t, ctx, alice, "", "finetune", "create", "--file", chatFile(t, 10), "--model", "glm-4-test", "--epochs", "1", "--batch-size", "8", "--seed", "9", "--json")
	var sub server.FineTuneSubmitted
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("finetune create: exit %d, %s", code, out)
	}
	out, code = autoglm(t, ctx, alice, "", "finetune", "watch", sub.ID)
	if code != 0 || !strings.Contains(out, "COMPLETED") || !strings.Contains(out, "fine-tuned model: "+sub.FineTunedModel) {
		t.Fatalf("finetune watch: exit %d\n%s", code, out)
	}
	var st server.TaskStatus
	if out, code = autoglm(t, ctx, alice, "", "finetune", "watch", sub.ID, "--json"); code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != task.Completed {
		t.Errorf("finetune watch --json: exit %d, %s", code, out)
	}

	var listed []taskclient.Summary
	if out, code = autoglm(t, ctx, alice, "", "finetune", "list", "--json"); code != 0 || json.Unmarshal([]byte(out), &listed) != nil {
		t.Fatalf("finetune list --json: exit %d, %s", code, out)
	}
	if !slices.ContainsFunc(listed, func(s taskclient.Summary) bool { return s.ID == sub.ID }) || slices.ContainsFunc(listed, func(s taskclient.Summary) bool { return s.Kind != string(task.KindFineTune) }) {
		t.Errorf("finetune list: %+v", listed)
	}

	var evs []taskclient.FineTuneEvent
	start := time.Now()
	if out, code = autoglm(t, ctx, alice, "", "finetune", "events", sub.ID, "--json"); code != 0 || json.Unmarshal([]byte(out), &evs) != nil {
		t.Fatalf("finetune events --json: exit %d, %s", code, out)
	}
	t.Logf("finetune events: %d events in %s (the CLI's run, through the server)", len(evs), time.Since(start).Round(time.Millisecond))
	var steps []int
	sawCompleted := false
	for _, e := range evs {
		switch e.Type {
		case taskclient.FineTuneMetrics:
			m := e.Metrics
			if m == nil || m.TrainLoss <= 0 || m.Epoch <= 0 || e.Time.IsZero() {
				t.Errorf("metrics event %+v", e)
				continue
			}
			steps = append(steps, m.Step)
		case taskclient.FineTuneMessage:
			sawCompleted = sawCompleted || strings.HasPrefix(e.Message, string(task.Completed))
		}
	}
	// The loss curve: every step the trainer logged, in order, once, up
	// to the final model's.
	if len(steps) < 2 || !contiguous(steps) || !sawCompleted || steps[len(steps)-1] != st.FineTune.Step {
		t.Errorf("events: metrics at steps %v (the run's last %d), COMPLETED message %t", steps, st.FineTune.Step, sawCompleted)
	}
	var curve []taskclient.FineTuneEvent
	if out, code = autoglm(t, ctx, alice, "", "finetune", "events", sub.ID, "--metrics", "--json"); code != 0 || json.Unmarshal([]byte(out), &curve) != nil || len(curve) != len(steps) {
		t.Errorf("finetune events --metrics --json: exit %d, %d points, want %d", code, len(curve), len(steps))
	}
	if out, _ = autoglm(t, ctx, alice, "", "finetune", "events", sub.ID); !strings.Contains(out, fmt.Sprintf("step %d: training loss", st.FineTune.Step)) || !strings.Contains(out, "MESSAGE") {
		t.Errorf("finetune events:\n%s", out)
	}

	var cps []taskclient.FineTuneCheckpoint
	if out, code = autoglm(t, ctx, alice, "", "finetune", "checkpoints", sub.ID, "--json"); code != 0 || json.Unmarshal([]byte(out), &cps) != nil || len(cps) == 0 {
		t.Fatalf("finetune checkpoints --json: exit %d, %s", code, out)
	}
	final := cps[len(cps)-1]
	kept := 0
	for _, c := range cps[:len(cps)-1] {
		if c.Final || c.Step%2 != 0 {
			t.Errorf("checkpoint %+v", c)
		}
		if c.Kept {
			kept++
		}
	}
	if !final.Final || !final.Kept || final.Step != st.FineTune.Step || kept == 0 || kept > 2 {
		t.Errorf("checkpoints: final %+v, %d kept besides (max_keep 2)", final, kept)
	}
	if out, _ = autoglm(t, ctx, alice, "", "finetune", "checkpoints", sub.ID); !strings.Contains(out, "SEQ") || !strings.Contains(out, "true") {
		t.Errorf("finetune checkpoints:\n%s", out)
	}

	// The worker's training metrics: the steps, and the checkpoints'
	// uploads with their bytes.
	wrk := "http://" + suite.workerMetrics + "/metrics"
	for name, least := range map[string]float64{
		"autoglm_training_steps_total":                        float64(st.FineTune.Step),
		"autoglm_training_checkpoint_upload_bytes_total":      1,
		"autoglm_training_checkpoint_upload_duration_seconds": float64(len(cps)),
	} {
		if v := scrapeValue(t, ctx, wrk, name); v < least {
			t.Errorf("%s is %g, want at least %g", name, v, least)
		}
	}

	var batch server.Submitted
	must(t, ctx, http.StatusCreated, "alice", "POST", "/api/v1/tasks", map[string]any{"prompt": "not a fine-tune", "model": "glm-4-test"}, &batch)
	if _, code = autoglm(t, ctx, alice, "", "finetune", "events", batch.ID); code != 4 {
		t.Errorf("finetune events of a prompt task: exit %d, want 4", code)
	}

	// A long job, slow enough to be caught training.
	t.Setenv("TESTTRAINER_STEP_DELAY", "50ms")
	out, code = autoglm(t, ctx, alice, "", "finetune", "create", "--file", chatFile(t, 10), "--model", "glm-4-test", "--epochs", "50", "--batch-size", "1", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("finetune create: exit %d, %s", code, out)
	}
	watch, lines := startCLI(t, ctx, alice, "finetune", "watch", sub.ID)
	var seen []string
	for lines.Scan() && !strings.Contains(lines.Text(), "training: step") {
		seen = append(seen, lines.Text())
	}
	if !strings.Contains(lines.Text(), "epoch") || !strings.Contains(lines.Text(), "loss") || !strings.Contains(lines.Text(), "steps/s") {
		t.Fatalf("watch ended before it showed the training: %q\n%s", lines.Text(), strings.Join(seen, "\n"))
	}
	// Set before the heartbeat that showed the step.
	if v := scrapeValue(t, ctx, wrk, "autoglm_training_loss", "task", sub.ID); v <= 0 {
		t.Errorf("autoglm_training_loss of the training task is %g", v)
	}
	resumes := scrapeValue(t, ctx, wrk, "autoglm_training_resumes_total")
	if _, code = autoglm(t, ctx, alice, "", "finetune", "pause", sub.ID); code != 3 {
		t.Errorf("alice, a submitter, pausing: exit %d, want 3", code)
	}
	for _, verb := range []string{"pause", "resume"} {
		st = server.TaskStatus{}
		if out, code = autoglm(t, ctx, olga, "", "finetune", verb, sub.ID, "--reason", "cli test", "--json"); code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.ID != sub.ID {
			t.Fatalf("olga: finetune %s: exit %d, %s", verb, code, out)
		}
		if verb == "pause" {
			eventually(t, ctx, "the trainer to stop", func() (bool, error) {
				d, err := suite.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(sub.ID), "")
				return err == nil && len(d.GetPendingActivities()) == 0, err
			})
		}
	}
	eventually(t, ctx, "the resumed attempt to start from the pause's checkpoint", func() (bool, error) {
		return scrapeValue(t, ctx, wrk, "autoglm_training_resumes_total") > resumes, nil
	})
	if out, code = autoglm(t, ctx, alice, "", "finetune", "cancel", sub.ID); code != 0 || !strings.Contains(out, "cancel: fine-tuning task "+sub.ID) {
		t.Errorf("finetune cancel: exit %d, %s", code, out)
	}
	var rest strings.Builder
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	err := watch.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 6 || !strings.Contains(rest.String(), "CANCELLED") || !strings.Contains(rest.String(), "PAUSED") {
		t.Errorf("watch of a cancelled job: %v\n%s", err, rest.String())
	}
}

// contiguous reports whether steps are 1, 2, 3, ….
func contiguous(steps []int) bool {
	for i, s := range steps {
		if s != i+1 {
			return false
		}
	}
	return true
}
