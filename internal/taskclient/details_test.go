package taskclient

import (
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestStaticDetailsHoldKeyFactsAndNoContent(t *testing.T) {
	in := task.Input{ID: "t-1", Tenant: "demo", Submitter: "alice", Model: "glm-4-test", Kind: task.KindPrompt, Prompt: "secret plans for the canary", Priority: 2}
	d := StartOptions(in).StaticDetails
	for _, want := range []string{"t-1", "demo", "alice", "glm-4-test", "prompt", "2 (1 highest", "autoglm approve t-1"} {
		if !strings.Contains(d, want) {
			t.Errorf("static details lack %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "canary") {
		t.Errorf("static details hold the prompt:\n%s", d)
	}
}
