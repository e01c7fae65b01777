package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"os"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/model/testhub"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// recordMirror, when set, saves the history of the interrupted mirror for
// workflows/replay tests:
//
//	go test ./tests/fleet -run TestMirror -record-mirror $PWD/workflows/testdata/mirror_resumed.json
var recordMirror = flag.String("record-mirror", "", "save the history of the resumed mirror to this JSON file")

// startMirrorWorker runs MirrorWorkflow and its activities on a queue of
// the test's own, with a staging folder of its own.
func startMirrorWorker(t *testing.T, queue string, up model.Upstream) {
	t.Helper()
	w := sdkworker.New(suite.Temporal, queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(workflows.MirrorWorkflow, workflow.RegisterOptions{Name: task.MirrorWorkflowType})
	w.RegisterActivity(&activities.Mirror{Store: suite.Store, Upstream: up, StagingDir: t.TempDir()})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
}

// TestMirrorResumesAndVerifies copies a 50 MiB model whose stream the hub
// breaks four times: the first attempt's streamed upload is aborted at the
// first break, it resumes the download twice with Range requests and gives
// up at the fourth, and the retry goes on from the staged bytes; the copy in the
// bucket hashes to the upstream's sha256, no byte is sent twice, and a
// second run skips every verified file. A file served once with a flipped
// byte is caught by its sha256 and its upload never completes (the bucket
// keeps one version of it).
func TestMirrorResumesAndVerifies(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	hub := testhub.New("hf_test_token")
	defer hub.Close()
	weights := testhub.Fixture(42, 50<<20)
	want := hub.Add("acme/tiny-glm", "rev1", "model.safetensors", weights)
	hub.Add("acme/tiny-glm", "rev1", "config.json", []byte(`{"architectures":["GlmForCausalLM"]}`))
	tokenizer := testhub.Fixture(5, 20<<20)
	hub.Add("acme/tiny-glm", "rev1", "tokenizer.safetensors", tokenizer)
	// One answer with a flipped byte: that upload must never complete.
	hub.CorruptNext("acme/tiny-glm", "rev1", "tokenizer.safetensors", 1)
	hub.CutAfter("acme/tiny-glm", "rev1", "model.safetensors", 20<<20, 1<<20, 1<<20, 1<<20)

	queue := "fleet-mirror-" + t.Name()
	startMirrorWorker(t, queue, model.Upstream{HubURL: hub.URL(), Token: "hf_test_token"})
	in := task.MirrorInput{Name: "tiny-glm", Repo: "acme/tiny-glm", Revision: "rev1", Actor: "olga"}
	run, err := suite.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: task.MirrorWorkflowID(in.Name, in.Revision), TaskQueue: queue}, task.MirrorWorkflowType, in)
	if err != nil {
		t.Fatal(err)
	}
	var res task.MirrorResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("mirror: %v", err)
	}
	if res.Files != 3 || res.Skipped != 0 || res.Bytes != int64(len(weights)+len(tokenizer))+36 {
		t.Fatalf("result %+v: want 3 files copied, none skipped", res)
	}
	tk := task.ModelPrefix("tiny-glm", "rev1") + "tokenizer.safetensors"
	if vs, err := suite.Store.Versions(ctx, tk); err != nil || len(vs) != 1 {
		t.Fatalf("%s has %d version(s) (%v); want 1: the corrupted copy must never have completed", tk, len(vs), err)
	}
	if got := objectSHA256(t, tk); got != testhubSHA(tokenizer) {
		t.Fatalf("%s in the bucket hashes to %s, want %s", tk, got, testhubSHA(tokenizer))
	}

	r, info, err := suite.Store.Get(ctx, task.ModelPrefix("tiny-glm", "rev1")+"model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, r)
	r.Close()
	if err != nil || hex.EncodeToString(h.Sum(nil)) != want || info.Metadata["sha256"] != want {
		t.Fatalf("bucket copy sha256 %x (metadata %q), want %s (err %v)", h.Sum(nil), info.Metadata["sha256"], want, err)
	}
	var meta task.CacheMeta
	mr, _, err := suite.Store.Get(ctx, task.ModelPrefix("tiny-glm", "rev1")+task.CacheMetaName)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(mr).Decode(&meta)
	mr.Close()
	if err != nil || len(meta.Files) != 3 || meta.Revision != "rev1" || meta.FetchedAt.IsZero() {
		t.Fatalf("cache.meta %+v (err %v)", meta, err)
	}

	var sent, ranged int64
	for _, q := range hub.Requests() {
		if q.File == "acme/tiny-glm@rev1/model.safetensors" {
			sent += q.Sent
			if q.Offset > 0 {
				ranged++
			}
		}
	}
	if ranged != 4 || sent != int64(len(weights)) {
		t.Fatalf("the hub answered %d ranged requests and sent %d bytes; want 4 resumes and exactly %d bytes", ranged, sent, len(weights))
	}
	if attempts := maxActivityAttempt(t, run.GetID(), run.GetRunID()); attempts < 2 {
		t.Fatalf("the file's activity ran %d attempt(s); the fourth break should have made it retry", attempts)
	}
	t.Logf("mirror: %d files, %d bytes, sha256 %s verified; %d ranged requests, %d bytes sent by the hub", res.Files, res.Bytes, want[:12], ranged, sent)

	before := len(hub.Requests())
	run2, err := suite.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: task.MirrorWorkflowID(in.Name, in.Revision), TaskQueue: queue}, task.MirrorWorkflowType, in)
	if err != nil {
		t.Fatal(err)
	}
	var res2 task.MirrorResult
	if err := run2.Get(ctx, &res2); err != nil {
		t.Fatal(err)
	}
	if res2.Skipped != 3 || len(hub.Requests()) != before {
		t.Fatalf("re-run %+v fetched %d file(s) again; want both skipped as verified", res2, len(hub.Requests())-before)
	}
}

func objectSHA256(t *testing.T, key string) string {
	t.Helper()
	r, _, err := suite.Store.Get(testCtx(t, time.Minute), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func testhubSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// maxActivityAttempt is the highest attempt any activity of the run
// started with, read from its history; with -record-mirror it saves the
// history too.
func maxActivityAttempt(t *testing.T, wid, rid string) int32 {
	t.Helper()
	h := history(t, wid, rid)
	var most int32
	for _, ev := range h.Events {
		if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && a.Attempt > most {
			most = a.Attempt
		}
	}
	saveHistory(t, h, *recordMirror)
	return most
}

// history reads a run's whole history.
func history(t *testing.T, wid, rid string) *historypb.History {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	iter := suite.Temporal.GetWorkflowHistory(ctx, wid, rid, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	return h
}

// saveHistory writes h for the replay tests in workflows/testdata when
// path is set.
func saveHistory(t *testing.T, h *historypb.History, path string) {
	t.Helper()
	if path == "" {
		return
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}
