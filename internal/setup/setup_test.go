package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
)

func TestSearchAttributesAreTheTasks(t *testing.T) {
	sa := SearchAttributes()
	if len(sa) != 6 || sa["TaskPriority"] != enumspb.INDEXED_VALUE_TYPE_INT || sa["TaskState"] != enumspb.INDEXED_VALUE_TYPE_KEYWORD {
		t.Errorf("SearchAttributes() = %v", sa)
	}
}

func TestCheckDynamicConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "dc.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok, err := CheckDynamicConfig(write("matching.useNewMatcher:\n  - value: true\nmatching.enableFairness:\n  - value: true\n"))
	if err != nil || len(ok) != 2 || !ok[0].OK || !ok[1].OK {
		t.Errorf("complete config: %+v, %v", ok, err)
	}
	// Constrained to one namespace, or off, is not what fairness needs.
	bad, _ := CheckDynamicConfig(write("matching.useNewMatcher:\n  - value: true\n    constraints: {namespace: other}\nmatching.enableFairness:\n  - value: false\n"))
	for _, c := range bad {
		if c.OK || !strings.Contains(c.Detail, "set ") {
			t.Errorf("%s: %+v; want MISSING with what to set", c.What, c)
		}
	}
	if _, err := CheckDynamicConfig(filepath.Join(dir, "absent.yaml")); err == nil {
		t.Error("a missing file was accepted")
	}
}

func TestReportNamesWhatIsMissing(t *testing.T) {
	r := Report{Namespace: "default", Bucket: "autoglm", Checks: []Check{
		{What: "search attributes", OK: true},
		{What: "lifecycle rule autoglm-abort-multipart", OK: true, Warning: true, Detail: "the store does not keep it"},
		{What: "dynamic config matching.enableFairness", Detail: "set it"},
	}}
	if m := r.Missing(); len(m) != 1 || m[0].What != "dynamic config matching.enableFairness" {
		t.Errorf("Missing() = %+v; warnings are not missing", m)
	}
	s := r.String()
	for _, want := range []string{"ok      search attributes", "warn    lifecycle rule", "MISSING dynamic config matching.enableFairness: set it", "1 item(s) missing"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

// The task's attributes fit SQL visibility's columns beside a few others,
// and not beside six more Keywords: the check names the type and the
// attributes.
func TestColumnsCheck(t *testing.T) {
	if c := ColumnsCheck(nil); !c.OK || c.Detail != "Keyword 5 of 10, Int 1 of 3" {
		t.Errorf("an empty namespace: %+v", c)
	}
	others := map[string]enumspb.IndexedValueType{"Tenant": enumspb.INDEXED_VALUE_TYPE_KEYWORD, "Flag": enumspb.INDEXED_VALUE_TYPE_BOOL}
	if c := ColumnsCheck(others); !c.OK || c.Detail != "Keyword 5 of 10, Int 1 of 3, Bool 1 of 3" {
		t.Errorf("ours half there and a Bool beside: %+v", c)
	}
	for _, n := range []string{"A", "B", "C", "D", "E", "F"} {
		others[n] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	c := ColumnsCheck(others)
	if c.OK || !strings.Contains(c.Detail, "11 Keyword attributes (A, B, C, D, E, F, Model, Submitter, TaskKind, TaskState, Tenant) for 10 columns") {
		t.Errorf("six more Keywords: %+v", c)
	}
}
