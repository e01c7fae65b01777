package model

import (
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// FuzzParseListing feeds untrusted upstream answers to both listing
// parsers (a plain HTTP folder's manifest.json and the hub's revision
// answer). Whatever they accept must be safe to mirror: a commit usable
// as a revision, and files that stay inside the model's folder, are not
// the cache's record, have a sha256 and a size, and are listed once. The
// seeds and testdata/fuzz/FuzzParseListing run with every `go test`; a
// bounded search runs with
//
//	go test -run '^$' -fuzz FuzzParseListing -fuzztime 20s ./internal/model
func FuzzParseListing(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	f.Add([]byte(`{"files":[{"name":"model.safetensors","size":12,"sha256":"` + sum + `"}]}`))
	f.Add([]byte(`{"commit":"` + strings.Repeat("c", 40) + `","files":[{"name":"a/b.json","size":0,"sha256":"` + sum + `"}]}`))
	f.Add([]byte(`{"sha":"` + strings.Repeat("0", 40) + `","siblings":[{"rfilename":"config.json","size":3,"lfs":{"sha256":"` + sum + `","size":3}}]}`))
	f.Add([]byte(`{"files":[{"name":"../x","size":1,"sha256":"` + sum + `"}]}`))
	f.Add([]byte(`{"files":[{"name":"cache.meta","size":1,"sha256":"` + sum + `"}]}`))
	f.Add([]byte(`{"sha":"main","siblings":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) (Listing, error){ParseManifest, ParseHubRevision} {
			l, err := parse(b)
			if err != nil {
				if task.TypeOf(err) == "" {
					t.Fatalf("untyped error %v", err)
				}
				continue
			}
			if err := (task.MirrorInput{Name: "m", Repo: "o/r", Revision: l.Commit, Commit: l.Commit, Files: l.Files}).Validate(); err != nil {
				t.Fatalf("accepted commit %q: %v", l.Commit, err)
			}
			if len(l.Files) == 0 {
				t.Fatal("accepted a listing of no files")
			}
			seen := map[string]bool{}
			for _, f := range l.Files {
				if task.CheckModelFileName(f.Name) != nil || seen[f.Name] || f.Size < 0 || len(f.SHA256) != 64 || !isHex(f.SHA256) {
					t.Fatalf("accepted file %+v", f)
				}
				seen[f.Name] = true
			}
		}
	})
}
