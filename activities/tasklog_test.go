package activities

import (
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TaskLogs finds a task's tenant in the inputs of the task's activities;
// a renamed JSON field would silently stop the task logs.
func TestProbeTenant(t *testing.T) {
	in := task.Input{ID: "t1", Tenant: "acme"}
	for _, tc := range []struct {
		name string
		arg  any
		want string
	}{
		{"authorize", AuthorizeInput{Task: in}, "acme"},
		{"screen", ScreenInput{Task: in}, "acme"},
		{"infer", InferInput{TaskID: "t1", Tenant: "acme"}, "acme"},
		{"merge", MergeInput{TaskID: "t1", Tenant: "acme"}, "acme"},
		{"collect", CollectInput{TaskID: "t1", Tenant: "acme"}, "acme"},
		{"archive", ArchiveInput{Status: task.Status{ID: "t1", Tenant: "acme"}}, "acme"},
		{"dispatch (no tenant)", DispatchInput{TaskID: "t1"}, ""},
		{"not JSON", func() {}, ""},
	} {
		if got := probeTenant(tc.arg); got != tc.want {
			t.Errorf("%s: tenant %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestLogTaskOf(t *testing.T) {
	key, _ := storage.Key(storage.Log, "acme", "t1", "20260520-101500.000000001.jsonl")
	if got, ok := logTaskOf(key); !ok || got != (LogTask{Tenant: "acme", TaskID: "t1"}) {
		t.Errorf("logTaskOf(%s) = %+v, %t", key, got, ok)
	}
	for _, bad := range []string{"log/zz/acme/t1/x.jsonl", "data/00/acme/t1/x", "log/short"} {
		if _, ok := logTaskOf(bad); ok {
			t.Errorf("logTaskOf(%s) took a key outside the layout", bad)
		}
	}
	if m := chunkName.FindStringSubmatch("20260520-101500.000000001.jsonl"); m == nil || m[1] != "20260520" {
		t.Errorf("chunk name not recognised: %v", m)
	}
}
