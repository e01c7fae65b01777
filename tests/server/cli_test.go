package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// cliEnv is the environment of a user's machine: the server's address and
// a config folder, and no Temporal or bucket settings (they point nowhere,
// so using them would fail).
func cliEnv(t *testing.T, home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "TEMPORAL_") || strings.HasPrefix(k, "AUTOGLM_") || k == "HOME" || k == "XDG_CONFIG_HOME" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"TEMPORAL_ADDRESS=127.0.0.1:1", "AUTOGLM_S3_ENDPOINT=127.0.0.1:1", "AUTOGLM_SERVER="+suite.url)
	return append(env, extra...)
}

// autoglm runs the CLI with env and stdin, and returns stdout and its exit
// code.
func autoglm(t *testing.T, ctx context.Context, env []string, stdin string, args ...string) (string, int) {
	t.Helper()
	r := suite.RunCLI(t, ctx, testenv.CLIOptions{Env: env, Stdin: stdin}, args...)
	return r.Stdout, r.Code
}

// TestCLIThroughServer: the CLI on a user's machine needs the server and a
// key, nothing else. login keeps the key (0600); submit --wait, watch,
// approve, status, list and results work through the server; exit codes
// follow the error types; --as is refused, identity is the key's.
func TestCLIThroughServer(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	aliceHome, bobHome := t.TempDir(), t.TempDir()
	alice, bob := cliEnv(t, aliceHome), cliEnv(t, bobHome)
	zed := cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["zed"])

	if _, code := autoglm(t, ctx, alice, "agk_not-a-key\n", "login"); code != 3 {
		t.Fatalf("login with a bad key: exit %d, want 3", code)
	}
	if _, code := autoglm(t, ctx, alice, suite.keys["alice"]+"\n", "login"); code != 0 {
		t.Fatalf("alice's login: exit %d", code)
	}
	if _, code := autoglm(t, ctx, bob, suite.keys["bob"]+"\n", "login", "--json"); code != 0 {
		t.Fatalf("bob's login: exit %d", code)
	}
	creds := filepath.Join(aliceHome, ".config", "autoglm", "credentials.json")
	fi, err := os.Stat(creds)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file %s: %v, mode %v", creds, err, fi.Mode())
	}
	out, code := autoglm(t, ctx, alice, "", "whoami", "--json")
	var who struct{ User string }
	if code != 0 || json.Unmarshal([]byte(out), &who) != nil || who.User != "alice" {
		t.Fatalf("whoami: %d %s", code, out)
	}

	out, code = autoglm(t, ctx, alice, "", "submit", "--model", "glm-4-test", "--wait", "--json", "one line on durable execution")
	// A prompt's --wait --json is its whole output line.
	var line batch.OutputLine
	if code != 0 || json.Unmarshal([]byte(out), &line) != nil || line.Response == nil || line.Response.StatusCode != 200 {
		t.Fatalf("submit --wait: exit %d: %s", code, out)
	}

	file := filepath.Join(t.TempDir(), "batch.jsonl")
	os.WriteFile(file, batchFile(12, "cli"), 0o644)
	out, code = autoglm(t, ctx, alice, "", "submit", "--file", file, "--json")
	var sub struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil || sub.ID == "" {
		t.Fatalf("submit --file: exit %d: %s", code, out)
	}
	waitState(t, ctx, sub.ID, task.AwaitingApproval)
	for _, c := range []struct {
		env  []string
		args []string
		want int
	}{
		{alice, []string{"approve", sub.ID}, 3},                 // her own task
		{alice, []string{"approve", "--as", "bob", sub.ID}, 2},  // no --as through the server
		{zed, []string{"status", sub.ID}, 4},                    // another tenant: no such task
		{zed, []string{"approve", sub.ID}, 4},                   //
		{alice, []string{"status", "no-such-task"}, 4},          //
		{alice, []string{"set-priority", sub.ID, "1"}, 3},       // operators only
		{cliEnv(t, t.TempDir()), []string{"status", sub.ID}, 3}, // no key at all
	} {
		if _, code := autoglm(t, ctx, c.env, "", c.args...); code != c.want {
			t.Errorf("autoglm %v: exit %d, want %d", c.args, code, c.want)
		}
	}
	if _, code := autoglm(t, ctx, bob, "", "approve", sub.ID, "--reason", "fine"); code != 0 {
		t.Fatalf("bob's approve: exit %d", code)
	}
	out, code = autoglm(t, ctx, alice, "", "watch", sub.ID)
	if code != 0 {
		t.Fatalf("watch: exit %d", code)
	}
	wantWatchLines(t, out)
	out, code = autoglm(t, ctx, bob, "", "status", sub.ID, "--json")
	var st struct {
		State     task.State
		Approvals []task.Decision
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != task.Completed || len(st.Approvals) != 1 || st.Approvals[0].Actor != "bob" {
		t.Fatalf("status: exit %d: %s", code, out)
	}
	out, code = autoglm(t, ctx, alice, "", "list", "--json")
	if code != 0 || !strings.Contains(out, sub.ID) {
		t.Fatalf("list: exit %d, lists the task: %v", code, strings.Contains(out, sub.ID))
	}
	if out, _ = autoglm(t, ctx, zed, "", "list", "--json"); strings.Contains(out, sub.ID) {
		t.Fatalf("zed's list shows demo's task")
	}
	dir := filepath.Join(t.TempDir(), "results")
	if _, code := autoglm(t, ctx, alice, "", "results", sub.ID, "--dir", dir); code != 0 {
		t.Fatalf("results: exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, "output.jsonl"))
	if err != nil || strings.Count(string(b), "\n") != 12 {
		t.Fatalf("results/output.jsonl: %v, %d lines", err, strings.Count(string(b), "\n"))
	}
	if _, err := os.Stat(filepath.Join(dir, "errors.jsonl")); err != nil {
		t.Fatalf("results/errors.jsonl: %v", err)
	}

	// Attachments go through the server too, and only to one's own task.
	spec := filepath.Join(t.TempDir(), "spec.txt")
	os.WriteFile(spec, []byte("the spec of the thing to review\n"), 0o644)
	out, code = autoglm(t, ctx, alice, "", "submit", "--model", "glm-4-test", "--attach", spec, "--json", "review the attached spec")
	var done struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &done) != nil {
		t.Fatalf("submit --attach: exit %d: %s", code, out)
	}
	if _, code := autoglm(t, ctx, alice, "", "watch", done.ID); code != 0 {
		t.Fatalf("watch of the task with an attachment: exit %d", code)
	}
	dir = filepath.Join(t.TempDir(), "attached")
	if _, code := autoglm(t, ctx, alice, "", "results", done.ID, "--dir", dir); code != 0 {
		t.Fatalf("results: exit %d", code)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "attachments", "spec.txt")); err != nil || string(b) != "the spec of the thing to review\n" {
		t.Fatalf("the attachment came back as %q, %v", b, err)
	}
	for who, want := range map[string]int{"dave": 403, "zed": 404, "": 401} {
		if code, body := call(t, ctx, who, "POST", "/api/v1/tasks/"+done.ID+"/attachments?name=evil.txt", []byte("x")); code != want {
			t.Errorf("%q attaching to alice's task: %d %s, want %d", who, code, body, want)
		}
	}
}

// wantWatchLines checks what `autoglm watch` printed before the final
// status: each transition once, each with its time, state and actor, the
// task's end last, after ARCHIVING.
func wantWatchLines(t *testing.T, out string) {
	t.Helper()
	var states []string
	for _, ln := range strings.Split(out, "\n") {
		if strings.HasPrefix(ln, "task ") {
			break
		}
		if strings.TrimSpace(ln) == "" || strings.HasPrefix(ln, " ") {
			continue // progress lines
		}
		f := strings.Fields(ln)
		if len(f) < 3 {
			t.Errorf("watch printed %q: a transition without its actor", ln)
			continue
		}
		states = append(states, f[1])
	}
	n := len(states)
	if n < 2 || states[n-2] != string(task.Archiving) || states[n-1] != string(task.Completed) || slices.Index(states, string(task.Completed)) != n-1 {
		t.Errorf("watch printed the states %v; want ARCHIVING then COMPLETED, once, last:\n%s", states, out)
	}
}
