package storage

import (
	"errors"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestKeyLayout(t *testing.T) {
	got, err := Key(Data, "acme", "task-0001", "parts/output-00001.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	// sha256("acme") = 822b33ad…
	want := "data/82/acme/task-0001/parts/output-00001.jsonl"
	if got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	if s := TenantHash("acme"); len(s) != 2 || strings.Trim(s, "0123456789abcdef") != "" {
		t.Errorf("TenantHash = %q, want 2 hex digits", s)
	}
	if p := TaskPrefix(Data, "acme", "task-0001"); !strings.HasPrefix(got, p) || !strings.HasSuffix(p, "/") {
		t.Errorf("TaskPrefix = %q does not hold %q", p, got)
	}
}

func TestTenantHashIsStable(t *testing.T) {
	// echo -n acme | sha256sum
	if got := TenantHash("acme"); got != "82" {
		t.Errorf("TenantHash(acme) = %q, want 82", got)
	}
}

func TestKeyRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		c                    Category
		tenant, taskID, file string
	}{
		{"parent segments", Data, "acme", "t1", "../../etc/passwd"},
		{"parent segment inside", Data, "acme", "t1", "parts/../../x"},
		{"absolute path", Data, "acme", "t1", "/abs"},
		{"NUL", Data, "acme", "t1", "a\x00b"},
		{"newline", Data, "acme", "t1", "a\nb"},
		{"backslash", Data, "acme", "t1", `parts\x`},
		{"dot", Data, "acme", "t1", "."},
		{"empty", Data, "acme", "t1", ""},
		{"trailing slash", Data, "acme", "t1", "parts/"},
		{"double slash", Data, "acme", "t1", "parts//x"},
		{"too deep", Data, "acme", "t1", "a/b/c/d"},
		{"very long", Data, "acme", "t1", strings.Repeat("a", 201)},
		{"invalid UTF-8", Data, "acme", "t1", "a\xffb"},
		{"bidi override", Data, "acme", "t1", "invoice\u202efdp.exe"},
		{"tenant with slash", Data, "acme/other", "t1", "x"},
		{"tenant upper case", Data, "Acme", "t1", "x"},
		{"tenant dot-dot", Data, "a..b", "t1", "x"},
		{"tenant too long", Data, strings.Repeat("a", 64), "t1", "x"},
		{"task id empty", Data, "acme", "", "x"},
		{"task id leading dot", Data, "acme", ".t1", "x"},
		{"unknown category", Category("secrets"), "acme", "t1", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Key(tc.c, tc.tenant, tc.taskID, tc.file)
			if !errors.Is(err, task.ErrInvalidInput) {
				t.Errorf("Key = %q, %v; want an error matching task.ErrInvalidInput", k, err)
			}
		})
	}
}

func TestSafeNameAccepts(t *testing.T) {
	for in, want := range map[string]string{
		"output.jsonl":                     "output.jsonl",
		"parts/output-00001.jsonl":         "parts/output-00001.jsonl",
		"checkpoints/000042/metadata.json": "checkpoints/000042/metadata.json",
		"报告 2026.pdf":                      "报告 2026.pdf",
		"..hidden":                         "..hidden",               // only whole ".." segments climb
		"re\u0301sume\u0301.pdf":           "r\u00e9sum\u00e9.pdf",   // NFD in, NFC out
		strings.Repeat("é", 100):           strings.Repeat("é", 100), // 200 bytes
	} {
		got, err := SafeName(in)
		if err != nil || got != want {
			t.Errorf("SafeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestTaskPrefixOfInvalidIDsMatchesNothing(t *testing.T) {
	for _, tenant := range []string{"", "a/b", "../x"} {
		if p := TaskPrefix(Data, tenant, "t1"); p != "invalid/" {
			t.Errorf("TaskPrefix(%q) = %q, want invalid/", tenant, p)
		}
	}
}

func TestCheckOwnKeyAcceptsOnlyTheTasksOwnPrefix(t *testing.T) {
	own, _ := Key(Data, "acme", "t1", "input.jsonl")
	attach, _ := Key(Document, "acme", "t1", "attachments/spec.pdf")
	other, _ := Key(Data, "other", "t1", "input.jsonl")
	sibling, _ := Key(Data, "acme", "t2", "input.jsonl")
	for key, ok := range map[string]bool{
		own:     true,
		attach:  true,
		other:   false, // another tenant's task of the same ID
		sibling: false,
		"data/" + TenantHash("other") + "/acme/t1/input.jsonl": false, // the wrong tenant hash
		TaskPrefix(Data, "acme", "t1") + "../t2/input.jsonl":   false,
		TaskPrefix(Data, "acme", "t1"):                         false, // the folder itself
		"fleet/nodes/local.json":                               false,
		"":                                                     false,
	} {
		err := CheckOwnKey("acme", "t1", key)
		if ok != (err == nil) {
			t.Errorf("CheckOwnKey(%q): %v, want ok=%v", key, err, ok)
		}
		if err != nil && !errors.Is(err, task.ErrPermissionDenied) && !errors.Is(err, task.ErrInvalidInput) {
			t.Errorf("CheckOwnKey(%q): untyped error %v", key, err)
		}
	}
}
