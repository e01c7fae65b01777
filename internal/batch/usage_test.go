package batch_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// sumUsage is the sum of response.body.usage over output lines.
func sumUsage(t *testing.T, out []batch.OutputLine) task.Usage {
	t.Helper()
	var sum task.Usage
	for _, ol := range out {
		var body struct {
			Usage task.Usage `json:"usage"`
		}
		if err := json.Unmarshal(ol.Response.Body, &body); err != nil {
			t.Fatalf("%s: %v", ol.CustomID, err)
		}
		sum.Add(body.Usage)
	}
	return sum
}

// TestUsageIsTheSumOverTheOutputAcrossAResume stops a batch midway and
// resumes it from its checkpoint: the tokens the final checkpoint counts
// are exactly those of the answers in the merged output, none counted
// twice for the items the second run redid.
func TestUsageIsTheSumOverTheOutputAcrossAResume(t *testing.T) {
	srv := startModel(t, testmodel.Faults{Latency: time.Millisecond, BadRequest: 0.05})
	input := batchFile(300, nil)
	sink := newMemSink()
	cfg := batch.Config{Concurrency: 8, PartItems: 20}
	e := engine(srv, sink, cfg)
	ctx, cancel := context.WithCancelCause(context.Background())
	e.Progress = func(m batch.Mark) {
		if m.Counts.Done() >= 120 {
			cancel(batch.ErrStopped)
		}
	}
	cp, err := e.Run(ctx, strings.NewReader(input), batch.Checkpoint{})
	if err != batch.ErrStopped {
		t.Fatalf("want ErrStopped, got %v", err)
	}
	if cp.Usage.IsZero() {
		t.Fatalf("the checkpoint after the stop counts no tokens: %+v", cp)
	}
	final, err := engine(srv, sink, cfg).Run(context.Background(), strings.NewReader(input), cp)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := lines(t, sink.merged[0])
	want := sumUsage(t, out)
	if want.TotalTokens == 0 || final.Usage != want {
		t.Fatalf("final usage %+v, want the output's sum %+v", final.Usage, want)
	}
	var parts task.Usage
	for _, p := range final.Parts {
		parts.Add(p.Usage)
	}
	if parts != want {
		t.Errorf("the parts count %+v, the output %+v", parts, want)
	}
}
