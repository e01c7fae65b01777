package client

import (
	"path/filepath"
	"testing"
)

// The CLI writes a result file only under a name that stays inside the
// results folder, whatever the server sent.
func TestResultPathStaysInsideTheFolder(t *testing.T) {
	dir := filepath.Join("out", "t1")
	for name, ok := range map[string]bool{
		"output.jsonl":         true,
		"attachments/spec.txt": true,
		"document/report.pdf":  true,
		"../evil.sh":           false,
		"attachments/../../x":  false,
		"/etc/passwd":          false,
		"":                     false,
		".":                    false,
		"a/./b":                false,
		"a//b":                 false,
		"x\x00y":               false,
		"attachments/..":       false,
		"\xff.bin":             false,
	} {
		p, err := resultPath(dir, name)
		if (err == nil) != ok {
			t.Errorf("%q: %q, %v; want accepted %v", name, p, err, ok)
			continue
		}
		if ok {
			if rel, err := filepath.Rel(dir, p); err != nil || !filepath.IsLocal(rel) {
				t.Errorf("%q goes to %s, outside %s", name, p, dir)
			}
		}
	}
}
