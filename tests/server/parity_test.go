package server

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// breakGlassEnv is the environment of an operator on a trusted host:
// Temporal, the bucket and the signing key from this process, no server
// (AUTOGLM_SERVER=direct), acting as user.
func breakGlassEnv(home, user string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "XDG_CONFIG_HOME", "AUTOGLM_SERVER", "AUTOGLM_API_KEY", "AUTOGLM_API_KEY_FILE", "AUTOGLM_USER", "AUTOGLM_TENANT":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"AUTOGLM_SERVER=direct", "AUTOGLM_USER="+user)
}

// shape is the keys of a JSON object, or of the first object of a JSON
// array, sorted: what a script reading the output relies on.
func shape(t *testing.T, out string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON: %v: %q", err, out)
	}
	if a, ok := v.([]any); ok {
		if len(a) == 0 {
			return "[]"
		}
		v = a[0]
	}
	o, ok := v.(map[string]any)
	if !ok {
		return "scalar"
	}
	var keys []string
	for k := range o {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// seen is what one run of a verb gave: its exit code and output shape.
type seen struct {
	Code  int
	JSON  bool // --json was asked for
	Shape string
}

// TestCLIParity runs the same verbs through the server and through the
// break-glass path, for tasks that end COMPLETED, FAILED (InvalidInput),
// REJECTED, CANCELLED and EXPIRED, and wants the same exit codes and the
// same output shapes from both; submit PROMPT --wait prints the test
// model's answer on both.
func TestCLIParity(t *testing.T) {
	ctx := testCtx(t, 8*time.Minute)
	dir := t.TempDir()
	batchPath := filepath.Join(dir, "batch.jsonl")
	os.WriteFile(batchPath, batchFile(12, "parity"), 0o644)
	dupPath := filepath.Join(dir, "dup.jsonl")
	os.WriteFile(dupPath, []byte(strings.Repeat(`{"custom_id":"same","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"x"}]}}`+"\n", 2)), 0o644)

	paths := map[string]func(user string) []string{
		"server": func(user string) []string {
			return cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys[user])
		},
		"break-glass": func(user string) []string { return breakGlassEnv(t.TempDir(), user) },
	}
	got := map[string]map[string]seen{}
	transitions := map[string][]string{}
	for _, name := range []string{"server", "break-glass"} {
		env := paths[name]
		res := map[string]seen{}
		got[name] = res
		run := func(step, user string, args ...string) string {
			t.Helper()
			r := suite.RunCLI(t, ctx, testenv.CLIOptions{Env: env(user)}, args...)
			s := seen{Code: r.Code, JSON: slices.Contains(args, "--json")}
			if slices.Contains(args, "--json") && strings.TrimSpace(r.Stdout) != "" {
				s.Shape = shape(t, r.Stdout)
			}
			res[step] = s
			return r.Stdout
		}
		id := func(out string) string {
			var v struct{ ID string }
			if json.Unmarshal([]byte(out), &v) != nil || v.ID == "" {
				t.Fatalf("%s: no task id in %q", name, out)
			}
			return v.ID
		}

		// COMPLETED, a prompt: the answer itself, in text and as the
		// whole output line.
		prompt := "parity on the " + name + " path"
		out := run("submit prompt --wait", "alice", "submit", "--model", "glm-4-test", "--wait", prompt)
		if want := answer(t, prompt); !strings.Contains(out, want+"\n") {
			t.Errorf("%s: submit --wait printed %q, want the answer %q", name, out, want)
		}
		out = run("submit prompt --wait --json", "alice", "submit", "--model", "glm-4-test", "--wait", "--json", prompt+" again")
		var line batch.OutputLine
		if err := json.Unmarshal([]byte(out), &line); err != nil || line.Response == nil || !strings.Contains(string(line.Response.Body), answer(t, prompt+" again")) {
			t.Errorf("%s: submit --wait --json printed %q, want the output line with the answer", name, out)
		}

		// COMPLETED, a batch a reviewer approves.
		done := id(run("submit --file", "alice", "submit", "--file", batchPath, "--json"))
		waitState(t, ctx, done, task.AwaitingApproval)
		run("approve", "bob", "approve", done, "--reason", "fine", "--json")
		run("watch completed", "alice", "watch", done, "--json")
		transitions[name] = auditLines(t, run("watch completed, text", "alice", "watch", done))
		run("status", "alice", "status", done, "--json")
		run("list", "alice", "list", "--json")
		out = run("results", "alice", "results", done, "--dir", filepath.Join(dir, name), "--json")
		var files []string
		if json.Unmarshal([]byte(out), &files) != nil || len(files) < 4 {
			t.Errorf("%s: results: %q", name, out)
		}
		run("resubmit --failed (none fixable)", "alice", "resubmit", "--failed", done, "--json")

		// FAILED with InvalidInput: duplicate custom_ids.
		run("submit --wait failed", "alice", "submit", "--file", dupPath, "--wait", "--json")

		// REJECTED.
		rejected := id(run("submit to reject", "alice", "submit", "--file", batchPath, "--json"))
		waitState(t, ctx, rejected, task.AwaitingApproval)
		run("reject", "bob", "reject", rejected, "--reason", "not today", "--json")
		run("watch rejected", "alice", "watch", rejected, "--json")

		// CANCELLED, then its unanswered items resubmitted.
		cancelled := id(run("submit to cancel", "alice", "submit", "--file", batchPath, "--json"))
		waitState(t, ctx, cancelled, task.AwaitingApproval)
		run("cancel", "alice", "cancel", cancelled, "--json")
		run("watch cancelled", "alice", "watch", cancelled, "--json")
		out = run("resubmit --unanswered", "alice", "resubmit", "--unanswered", cancelled, "--json")
		var again struct {
			Task   struct{ ID string }
			Origin string
			Items  int
		}
		if json.Unmarshal([]byte(out), &again) != nil || again.Items != 13 || again.Origin != cancelled {
			t.Errorf("%s: resubmit --unanswered: %q", name, out)
		} else {
			waitState(t, ctx, again.Task.ID, task.AwaitingApproval)
			var st struct{ Origin string }
			json.Unmarshal([]byte(run("status of the resubmitted", "alice", "status", again.Task.ID, "--json")), &st)
			if st.Origin != cancelled {
				t.Errorf("%s: the resubmitted task's origin is %q, want %s", name, st.Origin, cancelled)
			}
			run("cancel the resubmitted", "alice", "cancel", again.Task.ID, "--json")
		}

		// EXPIRED: tenant brief's approvals expire in seconds.
		expired := id(run("submit to expire", "alice", "submit", "--tenant", "brief", "--file", batchPath, "--json"))
		run("watch expired", "alice", "watch", expired, "--json")
	}

	// Each transition with its actor, the same on both paths.
	if s, b := transitions["server"], transitions["break-glass"]; !slices.Equal(s, b) || !slices.Contains(s, "APPROVED bob") {
		t.Errorf("watch shows the transitions\n  server:      %v\n  break-glass: %v\nwant the same, with bob's approval", s, b)
	}
	want := map[string]int{
		"submit prompt --wait": 0, "submit prompt --wait --json": 0, "submit --file": 0, "approve": 0,
		"watch completed": 0, "watch completed, text": 0, "status": 0, "list": 0, "results": 0,
		"resubmit --failed (none fixable)": 2, "submit --wait failed": 2,
		"reject": 0, "watch rejected": 6, "cancel": 0, "watch cancelled": 6,
		"resubmit --unanswered": 0, "watch expired": 6,
	}
	for step, code := range want {
		s, b := got["server"][step], got["break-glass"][step]
		if s.Code != code || b.Code != code {
			t.Errorf("%s: exit %d through the server, %d on the break-glass path; want %d", step, s.Code, b.Code, code)
		}
		if s.JSON && s.Shape == "" && step != "resubmit --failed (none fixable)" {
			t.Errorf("%s: printed no JSON with --json", step)
		}
		if s.Shape != b.Shape {
			t.Errorf("%s: output shapes differ:\n  server:      %s\n  break-glass: %s", step, s.Shape, b.Shape)
		}
	}
}

// startCLI starts the CLI with args and env and gives its output line by
// line as it comes; the caller waits for it.
func startCLI(t *testing.T, ctx context.Context, env []string, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.CommandContext(ctx, suite.CLI, args...)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(stdout)
}

// progressLine is a watch's progress line without a terminal: done, of
// total.
var progressLine = regexp.MustCompile(`^\s+progress: (\d+) of (\d+) `)

// wholeBatch reports whether a progress line counts every item done.
func wholeBatch(line string) bool {
	m := progressLine.FindStringSubmatch(line)
	return m != nil && m[1] == m[2]
}

// TestWatchEndsOnTheRunsLastCounts: a watch that saw a batch run, whose
// answers then all came between two of its looks, shows the run's last
// counts before the transitions that ended it, through the server and on
// the break-glass path alike.
func TestWatchEndsOnTheRunsLastCounts(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	batchPath := filepath.Join(t.TempDir(), "batch.jsonl")
	os.WriteFile(batchPath, batchFile(40, "last counts"), 0o644)
	for name, env := range map[string][]string{
		"server":      cliEnv(t, t.TempDir(), "AUTOGLM_API_KEY="+suite.keys["alice"]),
		"break-glass": breakGlassEnv(t.TempDir(), "alice"),
	} {
		r := suite.RunCLI(t, ctx, testenv.CLIOptions{Env: env}, "submit", "--file", batchPath, "--json")
		var sub struct{ ID string }
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &sub) != nil {
			t.Fatalf("%s: submit: exit %d: %s", name, r.Code, r.Output)
		}
		waitState(t, ctx, sub.ID, task.AwaitingApproval)
		release := suite.model.Hold()
		t.Cleanup(release)
		if _, err := suite.tasks.Decide(ctx, sub.ID, task.UpdateApprove, task.DecisionRequest{Actor: "bob", Reason: "last counts"}); err != nil {
			t.Fatal(err)
		}
		watch, lines := startCLI(t, ctx, env, "watch", sub.ID)
		var out []string
		for lines.Scan() {
			out = append(out, lines.Text())
			if m := progressLine.FindStringSubmatch(lines.Text()); m != nil && m[1] == "0" {
				release()
			}
		}
		if err := watch.Wait(); err != nil {
			t.Fatalf("%s: watch: %v\n%s", name, err, strings.Join(out, "\n"))
		}
		last, archiving := -1, -1
		for i, l := range out {
			if progressLine.MatchString(l) {
				last = i
			}
			if f := strings.Fields(l); archiving < 0 && len(f) > 1 && f[1] == string(task.Archiving) {
				archiving = i
			}
		}
		if last < 0 || archiving < last || !wholeBatch(out[last]) {
			t.Errorf("%s: watch's last progress line is not the whole batch's, before ARCHIVING:\n%s", name, strings.Join(out, "\n"))
		}
	}
}

// answer is the test model's answer to a prompt submitted as a task.
func answer(t *testing.T, prompt string) string {
	t.Helper()
	line, err := batch.PromptLine("glm-4-test", prompt)
	if err != nil {
		t.Fatal(err)
	}
	var req struct{ Body json.RawMessage }
	if err := json.Unmarshal(line, &req); err != nil {
		t.Fatal(err)
	}
	a, err := testmodel.Answer(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// auditLines are the state and actor of each transition line watch
// printed ("15:04:05  STATE  actor  reason"), without the times.
func auditLines(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && len(f[0]) == 8 && strings.Count(f[0], ":") == 2 && task.State(f[1]) != "" && strings.ToUpper(f[1]) == f[1] {
			lines = append(lines, f[1]+" "+f[2])
		}
	}
	if len(lines) == 0 {
		t.Errorf("watch printed no transition: %q", out)
	}
	return lines
}
