package taskclient

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestPrepareGivesAPromptTheTenantsDefaultModel(t *testing.T) {
	c := &Client{Policy: authz.Static(authz.Default())}
	in := task.Input{ID: "t1", Tenant: "demo", Submitter: "alice", Priority: 3, Kind: task.KindPrompt}
	if err := c.prepare(context.Background(), &in, SubmitRequest{Prompt: "hi"}); err != nil {
		t.Fatal(err)
	}
	if in.Model != "glm-4-test" {
		t.Errorf("model %q, want the demo tenant's default glm-4-test", in.Model)
	}
}

func TestPrepareRefusesWhatAuthorizationWouldLater(t *testing.T) {
	c := &Client{Policy: authz.Static(authz.Default())}
	for name, tc := range map[string]struct {
		in   task.Input
		r    SubmitRequest
		want *task.Error
	}{
		"unknown tenant":    {task.Input{Tenant: "nope"}, SubmitRequest{Prompt: "hi"}, task.ErrUnknownTenant},
		"model not allowed": {task.Input{Tenant: "demo", Model: "gpt-9"}, SubmitRequest{Prompt: "hi"}, task.ErrModelNotAllowed},
		"empty prompt":      {task.Input{Tenant: "demo"}, SubmitRequest{Prompt: "  "}, task.ErrInvalidInput},
		"priority 9":        {task.Input{Tenant: "demo", Priority: 9}, SubmitRequest{Prompt: "hi"}, task.ErrInvalidInput},
	} {
		t.Run(name, func(t *testing.T) {
			in := tc.in
			in.ID, in.Submitter, in.Kind = "t1", "alice", task.KindPrompt
			if err := c.prepare(context.Background(), &in, tc.r); !errors.Is(err, tc.want) {
				t.Errorf("want %s, got %v", tc.want.Type, err)
			}
		})
	}
}

func TestPrepareNamesTheEncodingOfABatchFile(t *testing.T) {
	line := `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"hi"}]}}` + "\n"
	var u16 []byte
	u16 = append(u16, 0xff, 0xfe)
	for _, u := range utf16.Encode([]rune(line)) {
		u16 = append(u16, byte(u), byte(u>>8))
	}
	for name, tc := range map[string]struct {
		content []byte
		want    string
	}{
		"UTF-8 BOM": {append([]byte("\xef\xbb\xbf"), line...), "byte-order mark"},
		"UTF-16":    {u16, "UTF-16"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "batch.jsonl")
			if err := os.WriteFile(path, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			in := task.Input{ID: "t1", Tenant: "demo", Submitter: "alice", Priority: 3}
			err := (&Client{}).prepare(context.Background(), &in, SubmitRequest{File: path})
			if !errors.Is(err, task.ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "body.model") {
				t.Errorf("want InvalidInput naming %q, got %v", tc.want, err)
			}
		})
	}
}

func TestCheckFinishedRefusesResultsOfARunningTask(t *testing.T) {
	running := task.Status{ID: "t1", State: task.Running}
	if err := CheckFinished(running, false); !errors.Is(err, task.ErrWrongState) || !strings.Contains(err.Error(), "--partial") {
		t.Errorf("a running task: %v", err)
	}
	if err := CheckFinished(running, true); err != nil {
		t.Errorf("--partial: %v", err)
	}
	for _, s := range []task.State{task.Completed, task.Failed, task.Cancelled} {
		if err := CheckFinished(task.Status{ID: "t1", State: s}, false); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}
