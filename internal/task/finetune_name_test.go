package task

import "testing"

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
