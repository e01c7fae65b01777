package batch_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
)

// BenchmarkEngine runs 20,000 items at 64 in flight against the test
// model at 5 ms with an in-memory sink: the engine's own cost, without the
// bucket or Temporal. Profile it with
//
//	go test -run '^$' -bench Engine -benchtime 1x -cpuprofile cpu.out ./internal/batch
func BenchmarkEngine(b *testing.B) {
	srv := testmodel.New(testmodel.Options{Faults: testmodel.Faults{Latency: 5 * time.Millisecond}})
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	input := batchFile(20000, nil)
	for b.Loop() {
		e := &batch.Engine{
			Client: llm.New(llm.Config{BaseURL: srv.URL(), MaxIdleConnsPerHost: 64}),
			Sink:   newMemSink(),
			Config: batch.Config{Model: "glm-4-test", Concurrency: 64},
		}
		if _, err := e.Run(context.Background(), strings.NewReader(input), batch.Checkpoint{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(20000*float64(b.N)/b.Elapsed().Seconds(), "items/s")
}
