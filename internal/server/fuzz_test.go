package server

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// FuzzAttachmentName: an accepted attachment name is one file name that
// stays inside the folder it is written to, makes a valid object key
// under the task's attachments, and comes back from the results as the
// same relative path.
func FuzzAttachmentName(f *testing.F) {
	for _, s := range []string{"spec.txt", "../etc/passwd", "a/b", `a\b`, ".", "..", "", "résumé.pdf", "CON", "x\x00y", ".hidden", " spaced name .txt", strings.Repeat("n", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		name, err := attachmentName(raw)
		if err != nil {
			return
		}
		if !utf8.ValidString(name) || strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." || name == "" {
			t.Fatalf("accepted %q as %q", raw, name)
		}
		dir := "/spool/dir"
		if p := filepath.Join(dir, name); filepath.Dir(p) != dir {
			t.Fatalf("%q is written to %s, outside %s", name, p, dir)
		}
		key, err := storage.Key(storage.Data, "acme", "t1", taskclient.AttachmentsDir+name)
		if err != nil {
			t.Fatalf("%q makes no key: %v", name, err)
		}
		if !ownKey(key, "acme", "t1") {
			t.Fatalf("%q makes key %s outside the task", name, key)
		}
	})
}
