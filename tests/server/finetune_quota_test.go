package server

import (
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

// TestDailyTrainingQuota: once a tenant's training attempts of the day
// held nodes' training slots for its max_training_seconds_per_day (its
// GPU time, as each attempt records it in the usage ledger),
// authorization refuses its next fine-tuning job with QuotaExceeded.
func TestDailyTrainingQuota(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	api := apiclient.New(suite.url, suite.keys["alice"])
	fineTune := func() task.Result {
		t.Helper()
		sub, err := api.FineTune(ctx, taskclient.SubmitRequest{Tenant: "gpumetered", Model: "glm-4-test", File: chatFile(t, 10),
			FineTune: &task.FineTune{Seed: 3, Hyperparameters: task.Hyperparameters{NEpochs: task.Number(1)}}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := api.Wait(ctx, sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// The first job of the day trains (unless an earlier run of this test
	// used the day's seconds: then it is refused like the second).
	first := fineTune()
	if first.State != task.Completed && !strings.Contains(first.Reason, "training seconds") {
		t.Fatalf("first job: %+v", first)
	}
	now := time.Now()
	recs, err := usage.Read(ctx, suite.Store, "gpumetered", now, now)
	if err != nil {
		t.Fatal(err)
	}
	if used := usage.TrainingSeconds(recs); used <= 0 {
		t.Fatalf("the ledger holds %g training seconds for gpumetered today (%+v); want the first job's", used, recs)
	}
	res := fineTune()
	if res.State != task.Failed || !strings.HasPrefix(res.Reason, "QuotaExceeded: tenant gpumetered has used ") || !strings.Contains(res.Reason, " of its 0.001 training seconds (GPU time) for today; new fine-tuning jobs are refused") {
		t.Fatalf("a job over the day's GPU time: %+v; want FAILED, refused for its training seconds", res)
	}
	st, err := api.Status(ctx, res.ID)
	if err != nil || st.LastErrorType != task.QuotaExceeded {
		t.Errorf("the refused job's status: %+v, %v; want last error QuotaExceeded", st.LastErrorType, err)
	}
}
