package engine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/assertion"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// A fine-tuning start the server signed, sent again straight to Temporal
// with its validation file or its hyperparameters swapped, runs nothing
// and writes nothing: the workflow checks the signed validation file and
// hyperparameters before its first activity, as it checks the training
// file.
func TestForgedFineTuneStartsRunNothing(t *testing.T) {
	ctx := testenv.Context(t, 3*time.Minute)
	suite.StartWorker(t, testenv.WorkerOptions{Node: "trust-ft", Env: []string{"AUTOGLM_MODELS=" + testmodel.DefaultModel}})

	id := "ft-signed-" + testenv.RandHex(4)
	put := func(name, body string) task.ObjectRef {
		key, err := storage.Key(storage.Data, tenant, id, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := suite.Store.Put(ctx, key, strings.NewReader(body), int64(len(body)), storage.PutOptions{ContentType: "application/jsonl"})
		if err != nil {
			t.Fatal(err)
		}
		return task.ObjectRef{Bucket: suite.Store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256}
	}
	var train, val bytes.Buffer
	for i := range 10 {
		fmt.Fprintf(&train, `{"messages":[{"role":"user","content":"%d+1?"},{"role":"assistant","content":"%d"}]}`+"\n", i, i+1)
		fmt.Fprintf(&val, `{"messages":[{"role":"user","content":"%d+2?"},{"role":"assistant","content":"%d"}]}`+"\n", i, i+2)
	}
	signed := task.Input{ID: id, Tenant: tenant, Submitter: "alice", Model: testmodel.DefaultModel, Kind: task.KindFineTune,
		Source: put("training.jsonl", train.String()),
		FineTune: &task.FineTune{ValidationFile: ptr(put("validation.jsonl", val.String())), Seed: 7,
			Hyperparameters: task.Hyperparameters{NEpochs: task.Number(2), LearningRateMultiplier: task.Number(0.5)}}}
	signed.Assertion = suite.Signer.SignStart(assertion.StartOf(signed), 0)
	other := put("other.jsonl", val.String()+`{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}`+"\n")
	before := objects(t, ctx)

	swapped := signed
	swappedFT := *signed.FineTune
	swappedFT.ValidationFile = &other
	swapped.FineTune = &swappedFT
	digest := assertion.FineTuneDigest(*signed.FineTune)[:16]
	what := func(v task.ObjectRef, digest string) string {
		return fmt.Sprintf("task %s of %s/alice (fine_tune, input %s sha256 %s, validation %s sha256 %s, hyperparameters %s)",
			id, tenant, signed.Source.Key, signed.Source.SHA256, v.Key, v.SHA256, digest)
	}
	wantRefused(t, ctx, swapped, "task "+id+" was not started: the start assertion is for "+what(*signed.FineTune.ValidationFile, digest)+
		", not this start: "+what(other, digest))

	hotter := signed
	hotterFT := *signed.FineTune
	hotterFT.Hyperparameters.LearningRateMultiplier = task.Number(10)
	hotter.FineTune = &hotterFT
	wantRefused(t, ctx, hotter, "task "+id+" was not started: the start assertion is for "+what(*signed.FineTune.ValidationFile, digest)+
		", not this start: "+what(*signed.FineTune.ValidationFile, assertion.FineTuneDigest(hotterFT)[:16]))

	if after := objects(t, ctx); !slices.Equal(before, after) {
		t.Errorf("the refused starts changed the bucket:\n before %v\n after  %v", before, after)
	}
}

func ptr[T any](v T) *T { return &v }
