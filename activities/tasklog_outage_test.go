package activities

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// The task log on a real MinIO that is stopped by its PID while two
// activities end, and started again on the same port and data folder: the
// lines of both are held and written once the bucket is back. The first
// activity's lines are all there, with no note of a drop; the second
// logged more than a buffer holds, and its chunk says exactly how many
// lines past the bound were dropped, and no more.
func TestTaskLogSurvivesABucketOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stack, store := startMinIO(t, ctx)
	// No chunk is written early: every line waits for the activity's end.
	l := &TaskLogs{Store: store, FlushBytes: 1 << 30}

	small := &logBuffer{l: l, tenant: "acme", taskID: "small", base: map[string]any{"task_id": "small"}}
	for i := range 100 {
		small.add("info", "step", []any{"n", i})
	}
	big := &logBuffer{l: l, tenant: "acme", taskID: "big", base: map[string]any{"task_id": "big"}}
	filler := strings.Repeat("x", 1000)
	added := 0
	for big.dropped < 50 {
		big.add("info", "step", []any{"n", added, "filler", filler})
		added++
	}
	dropped := big.dropped

	if err := stack.StopS3(); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*logBuffer{small, big} {
		if err := l.flushOrHold(ctx, b); err == nil {
			t.Fatalf("the stopped bucket took %s's chunk", b.taskID)
		}
	}
	if err := stack.RestartS3(ctx); err != nil {
		t.Fatal(err)
	}

	smallLines := waitLog(t, ctx, store, "small")
	if len(smallLines) != 100 {
		t.Errorf("the small task's log has %d lines; want the 100 logged", len(smallLines))
	}
	for i, ln := range smallLines {
		if ln.Msg != "step" || ln.N != i {
			t.Fatalf("the small task's line %d is %+v; want step %d, in order", i+1, ln, i)
		}
	}
	bigLines := waitLog(t, ctx, store, "big")
	kept, notes, noted := 0, 0, 0
	for _, ln := range bigLines {
		switch ln.Msg {
		case "step":
			kept++
		case "log lines dropped: the bucket did not take them":
			notes++
			noted += ln.Dropped
		}
	}
	if notes != 1 || noted != dropped || kept+dropped != added {
		t.Errorf("the big task's log kept %d of %d lines with %d note(s) of %d dropped; want one note of the %d dropped past the bound, the rest kept", kept, added, notes, noted, dropped)
	}
	t.Logf("bucket outage: the small task kept %d of 100 lines; the big one %d of %d, %d dropped past the %d MiB bound and noted", len(smallLines), kept, added, noted, maxLogBuffer>>20)
}

// startMinIO starts a real MinIO with one bucket for the test, stopped by
// its PID when the test ends; it skips the test in -short mode.
func startMinIO(t *testing.T, ctx context.Context) (*devstack.Stack, storage.Store) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	bin, err := devstack.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(bin, "minio")); err != nil {
		t.Fatalf("MinIO is not built in %s: run `make tools`", bin)
	}
	stack, err := devstack.Start(ctx, devstack.Options{Dir: t.TempDir(), BinDir: bin, Buckets: []string{"test"}, NoTemporal: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Stop() })
	store, err := storage.Open(ctx, storage.Config{Endpoint: stack.S3Endpoint, Bucket: "test", AccessKey: stack.AccessKey, SecretKey: stack.SecretKey, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return stack, store
}

// logLine is what the test reads of a task log line.
type logLine struct {
	Msg     string `json:"msg"`
	N       int    `json:"n"`
	Dropped int    `json:"dropped"`
}

// waitLog waits for the task's log chunks and returns their lines.
func waitLog(t *testing.T, ctx context.Context, store storage.Store, taskID string) []logLine {
	t.Helper()
	prefix := storage.TaskPrefix(storage.Log, "acme", taskID)
	for {
		infos, err := store.List(ctx, prefix)
		if err == nil && len(infos) > 0 {
			var out []logLine
			for _, in := range infos {
				rc, _, err := store.Get(ctx, in.Key)
				if err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(rc)
				sc.Buffer(nil, 8<<20)
				for sc.Scan() {
					var ln logLine
					if err := json.Unmarshal(sc.Bytes(), &ln); err != nil {
						t.Fatalf("a log line of %s is not JSON: %v", taskID, err)
					}
					out = append(out, ln)
				}
				rc.Close()
			}
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no log chunk of %s was written after the bucket came back: %v", taskID, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
