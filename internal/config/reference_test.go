package config

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from Reference")

// Every AUTOGLM_* and TEMPORAL_* name the code reads is in Reference, and
// every name in Reference is read somewhere: the reference cannot drift.
func TestReferenceMatchesTheCode(t *testing.T) {
	re := regexp.MustCompile(`"((?:AUTOGLM|TEMPORAL)_[A-Z0-9_]+)`)
	inCode := map[string]bool{}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || d.Name() == ".data" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			inCode[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range Reference {
		names = append(names, v.Name)
		if !inCode[v.Name] {
			t.Errorf("%s is in the reference but no code reads it", v.Name)
		}
	}
	for name := range inCode {
		// A secret's NAME_FILE twin is documented with it.
		if base, ok := strings.CutSuffix(name, "_FILE"); ok {
			if v, found := Lookup(base); found && v.Secret {
				continue
			}
		}
		if !slices.Contains(names, name) && !slices.Contains(trainer.ContractEnv, name) {
			t.Errorf("the code reads %s, which the reference lacks", name)
		}
	}
}

func TestReferenceMarkdownIsCurrent(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "configuration.md")
	if *update {
		if err := os.WriteFile(path, []byte(Markdown()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != Markdown() {
		t.Errorf("%s is out of date: go test ./internal/config -run TestReference -update", path)
	}
}
