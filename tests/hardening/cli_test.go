package hardening

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// What a new user hit on the CLI, run with the real binary: each mistake
// gets an error naming the real problem and the exit code of its type.
func TestCLIAnswersNewUsersMistakes(t *testing.T) {
	ctx := testCtx(t, 180*time.Second)
	as := []string{"--as", "alice", "--tenant", "acme"}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return autoglm(t, append(args[:1:1], append(as, args[1:]...)...)...)
	}

	// The README's first example, with no --model: the tenant's default.
	// (submit --wait --json prints the answer's output line; watch the
	// final status.)
	out, errOut, code := run("submit", "--json", "Explain durable execution in one line")
	var done task.Status
	if code != 0 || json.Unmarshal([]byte(out), &done) != nil {
		t.Fatalf("submit without --model: exit %d\n%s", code, errOut)
	}
	out, errOut, code = run("watch", done.ID, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &done) != nil || done.State != task.Completed || done.Model != model {
		t.Fatalf("watch of a task submitted without --model: exit %d, status %+v\n%s", code, done, errOut)
	}
	cleanUp(t, done.ID)

	t.Run("submit --id of an existing task is a Conflict and attaches nothing", func(t *testing.T) {
		attach := writeFile(t, "notes.txt", []byte("not for this task\n"))
		_, errOut, code := run("submit", "--id", done.ID, "--attach", attach, "another prompt")
		if code != 5 || !strings.Contains(errOut, "already exists") {
			t.Fatalf("exit %d, want 5 naming the existing task: %s", code, errOut)
		}
		for _, c := range storage.Categories {
			infos, err := suite.Store.List(ctx, storage.TaskPrefix(c, "acme", done.ID)+"attachments/")
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 0 {
				t.Errorf("the refused submit attached %s", infos[0].Key)
			}
		}
		m, _, err := storage.ReadManifest(ctx, suite.Store, "acme", done.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range m.Objects {
			if strings.Contains(e.Key, "attachments/") {
				t.Errorf("the manifest lists %s", e.Key)
			}
		}
	})

	t.Run("results of an unfinished task exit 5 unless --partial", func(t *testing.T) {
		out, errOut, code := run("submit", "--json", "--file", batchFile(t, autoApprove+2))
		var in task.Input
		if code != 0 || json.Unmarshal([]byte(out), &in) != nil {
			t.Fatalf("submit: exit %d: %s", code, errOut)
		}
		cleanUp(t, in.ID)
		waitState(t, ctx, in.ID, task.AwaitingApproval)
		_, errOut, code = run("results", in.ID, "--dir", t.TempDir())
		if code != 5 || !strings.Contains(errOut, "AWAITING_APPROVAL") || !strings.Contains(errOut, "--partial") {
			t.Errorf("results of a task awaiting approval: exit %d, want 5 saying so: %s", code, errOut)
		}
		if _, errOut, code := run("results", in.ID, "--partial", "--dir", t.TempDir()); code != 0 {
			t.Errorf("results --partial: exit %d: %s", code, errOut)
		}
	})

	var u16 []byte
	u16 = append(u16, 0xff, 0xfe)
	for _, u := range utf16.Encode([]rune(requestLine("a", "hi") + "\n")) {
		u16 = append(u16, byte(u), byte(u>>8))
	}
	dupAndBad := strings.Join([]string{
		requestLine("a", "one"), // 1
		`{"custom_id":"b",`,     // 2: not JSON
		requestLine("c", "three"),
		requestLine("a", "four again"), // 4: duplicate of 1
		`{"custom_id":"e","method":"GET","url":"/v1/chat/completions","body":{}}`, // 5
		requestLine("c", "six again"), // 6: duplicate of 3
	}, "\n") + "\n"
	for _, c := range []struct {
		name string
		args []string
		want int
		says []string
	}{
		{"authorization failure seen by --wait", []string{"submit", "--as", "aldo", "--wait", "hi"}, 3, []string{"PermissionDenied"}},
		{"--priority 0", []string{"submit", "--priority", "0", "hi"}, 2, []string{"priority 0"}},
		{"a UTF-8 BOM", []string{"submit", "--file", writeFile(t, "bom.jsonl", append([]byte("\xef\xbb\xbf"), requestLine("a", "hi")+"\n"...))}, 2, []string{"byte-order mark"}},
		{"UTF-16", []string{"submit", "--file", writeFile(t, "u16.jsonl", u16)}, 2, []string{"UTF-16"}},
		{"every invalid line at once", []string{"submit", "--wait", "--file", writeFile(t, "dup.jsonl", []byte(dupAndBad))}, 2,
			[]string{"4 invalid line(s)", "line 2:", "line 4:", "line 5:", "line 6:"}},
		{"a model allowed but served by no node", []string{"submit", "--model", unserved, "hi"}, 7, []string{"no live node serves model " + unserved}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// --as last: the aldo case overrides alice.
			args := append([]string{c.args[0]}, append(as, c.args[1:]...)...)
			_, errOut, code := autoglm(t, args...)
			if code != c.want {
				t.Errorf("autoglm %v: exit %d, want %d: %s", c.args, code, c.want, errOut)
			}
			for _, s := range c.says {
				if !strings.Contains(errOut, s) {
					t.Errorf("autoglm %v does not say %q: %s", c.args, s, errOut)
				}
			}
			if strings.Contains(errOut, "body.model") {
				t.Errorf("autoglm %v blames body.model: %s", c.args, errOut)
			}
		})
	}
}
