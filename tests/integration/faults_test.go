package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// A model server that answers 20% of requests with a 429 or a 500 and 2%
// with a 400: the batch completes, every retryable fault is retried, every
// 400 is reported in errors.jsonl and nothing else is, and the two files
// together hold each request once.
func TestModelServerFaultsAreRetriedOrReported(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	m := testmodel.New(testmodel.Options{Seed: uint64(time.Now().UnixNano()), Faults: testmodel.Faults{
		RateLimit: 0.1, ServerError: 0.1, BadRequest: 0.02,
	}})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	startWorker(t, workerOptions{Model: m})

	const total = 500
	in := writeBatch(t, "faults", total)
	id := newID("faults")
	submit(t, ctx, taskclient.SubmitRequest{ID: id, Tenant: tenant, Submitter: "alice", File: in.path})
	waitState(t, ctx, id, task.AwaitingApproval)
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}); err != nil {
		t.Fatalf("bob's approval: %v", err)
	}
	res := wait(t, ctx, id)
	if res.State != task.Completed || res.Counts.Done() != total {
		t.Fatalf("result %+v; want COMPLETED with %d answered", res, total)
	}

	out := outputLines(t, download(t, ctx, res.Output))
	errs := outputLines(t, download(t, ctx, res.Errors))
	exactlyOnce(t, in.ids, customIDCounts(out, errs))
	checkAnswers(t, out, in.bodies)

	// An item whose every try (the engine makes 5) drew a 429 or a 500
	// ends in errors.jsonl too: rare (0.2^5 an item), but it happens.
	var badRequests, exhausted int
	for _, l := range errs {
		switch {
		case l.Response != nil && l.Response.StatusCode == http.StatusBadRequest && l.Error != nil && l.Error.Code == string(llm.InvalidRequest):
			badRequests++
		case l.Response != nil && (l.Response.StatusCode == http.StatusTooManyRequests || l.Response.StatusCode == http.StatusInternalServerError):
			exhausted++
		default:
			t.Errorf("errors.jsonl holds %s, which is neither an injected 400 nor a retried-out 429/500: %+v %+v", l.CustomID, l.Response, l.Error)
		}
	}
	s := m.Stats()
	t.Logf("model server: %d requests, %d answered, %d 429s, %d 500s, %d 400s; errors.jsonl: %d 400s, %d retried out",
		s.Requests, s.OK, s.RateLimited, s.ServerErrors, s.BadRequests, badRequests, exhausted)
	if s.RateLimited == 0 || s.ServerErrors == 0 || s.BadRequests == 0 {
		t.Fatalf("the model server injected no fault of some kind: %+v", s)
	}
	if int64(badRequests) != s.BadRequests {
		t.Errorf("errors.jsonl holds %d 400s; the model server injected %d", badRequests, s.BadRequests)
	}
	if int64(len(out)) != s.OK || res.Counts.Completed != len(out) {
		t.Errorf("output.jsonl holds %d lines, the result counts %d completed; the model server answered %d", len(out), res.Counts.Completed, s.OK)
	}
	if len(out)+len(errs) != total {
		t.Errorf("output.jsonl and errors.jsonl hold %d lines; want %d", len(out)+len(errs), total)
	}
	// Every 429 and 500 was followed by another try, except the last try
	// of an item that ran out of them, and such an item had all its tries.
	retries := s.RateLimited + s.ServerErrors - int64(exhausted)
	if s.Requests != total+retries {
		t.Errorf("the model server got %d requests; want %d items + %d retries", s.Requests, total, retries)
	}
	if retries < int64(exhausted*(engineMaxAttempts-1)) {
		t.Errorf("%d items ran out of tries after only %d retries in all; each should have had %d tries", exhausted, retries, engineMaxAttempts)
	}
}

// engineMaxAttempts is the batch engine's default tries per request
// (batch.Config.MaxAttempts), which the worker does not change.
const engineMaxAttempts = 5
