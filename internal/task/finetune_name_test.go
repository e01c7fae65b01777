package task

import (
	"strings"
	"testing"
)

func TestParseFineTunedName(t *testing.T) {
	for _, c := range []struct {
		base, tenant, suffix, id string
	}{
		{"glm-4-9b", "demo", "support", "t1"},
		{"glm-4-9b", "demo", "", "t1"},
		{"org:model", "acme", "v2.1", "abc"},
	} {
		name := FineTunedName(c.base, c.tenant, c.suffix, c.id)
		got, err := ParseFineTunedName(name)
		if err != nil || got != (FineTunedModel{Base: c.base, Tenant: c.tenant, Suffix: c.suffix, TaskID: c.id}) {
			t.Errorf("ParseFineTunedName(%q) = %+v, %v", name, got, err)
		}
		if !IsFineTuned(name) {
			t.Errorf("IsFineTuned(%q) is false", name)
		}
	}
	for _, bad := range []string{"glm-4-9b", "ft:glm:demo:t1", "ft::demo:x:t1", "ft:glm:demo:x:", "ft:glm/x:demo:x:t1", "ft:glm:..:x:t1", "ft:glm:demo:x:t 1"} {
		if _, err := ParseFineTunedName(bad); TypeOf(err) != InvalidInput {
			t.Errorf("ParseFineTunedName(%q): %v; want InvalidInput", bad, err)
		}
	}
}

// A fine-tuned model is refused as a fine-tuning task's base, by the
// submit path and by the engine's authorize alike (both run Validate),
// with the base it should start from.
func TestAFineTunedModelIsNoBase(t *testing.T) {
	in := Input{ID: "t1", Tenant: "demo", Submitter: "alice", Kind: KindFineTune, Model: FineTunedName("glm-4-test", "demo", "oa", "j1"),
		Source: ObjectRef{Key: "k"}, FineTune: &FineTune{}}
	err := in.Validate()
	if TypeOf(err) != InvalidInput || !strings.Contains(err.Error(), "fine-tune glm-4-test on") {
		t.Fatalf("Validate: %v; want InvalidInput naming the base", err)
	}
	in.Model = "glm-4-test"
	if err := in.Validate(); err != nil {
		t.Fatalf("the base itself: %v", err)
	}
}
