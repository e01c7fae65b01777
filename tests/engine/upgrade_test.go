// Package engine tests what the engine itself guarantees about the task
// lifecycle, on the real stack (the Temporal dev server, MinIO, `autoglm
// worker` processes): a rolling upgrade of the control plane with Worker
// Versioning across two builds, the second built with the upgradetest
// tag, which changes TaskWorkflow's commands (a timer before the first
// stage) so that no history of the first build replays on it; and starts
// sent straight to Temporal, which the workflow refuses. The model server
// is the one stand-in (internal/llm/testmodel).
package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

const tenant = "demo" // the default policy's tenant; bob reviews

var suite struct {
	*testenv.Env
	tasks *taskclient.Client
	// second is the build with the incompatible change.
	second string
}

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, "engine", testenv.Options{
		Skip: "these tests start Temporal, MinIO and two builds of the worker",
	}, func(e *testenv.Env) error {
		suite.Env = e
		suite.tasks = &taskclient.Client{Signer: e.Signer, Temporal: e.Temporal, Store: e.Store}
		if _, err := e.StartModel(); err != nil {
			return err
		}
		suite.second = filepath.Join(e.Dir, "autoglm-second")
		build := exec.CommandContext(e.Ctx, "go", "build", "-tags", "upgradetest", "-o", suite.second, "./starter")
		build.Dir = e.Root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building the second build: %v\n%s", err, out)
		}
		return nil
	}))
}

// TestRollingUpgrade: a task waiting for approval on the first build stays
// pinned to it while the second becomes current; new tasks run on the
// second; the waiting task, approved, completes on the first with exact
// output; no worker meets a non-determinism error; once the first build
// has no open task it is retired (stopped), and new work still runs.
func TestRollingUpgrade(t *testing.T) {
	ctx := testenv.Context(t, 8*time.Minute)
	env := []string{"AUTOGLM_MODELS=" + testmodel.DefaultModel}
	first := suite.StartWorker(t, testenv.WorkerOptions{Node: "first", Env: env})
	firstBuild := currentBuild(t, ctx, "")
	// The suite's other tests run the suite's build: leave it current,
	// as a rollback would, not the second build that stops here.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h := suite.Temporal.WorkerDeploymentClient().GetHandle(config.DefaultDeployment)
		if _, err := h.SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{BuildID: firstBuild, IgnoreMissingTaskQueues: true}); err != nil {
			t.Errorf("making the suite's build current again: %v", err)
		}
	})

	old := submit(t, ctx, "old", 30)
	testenv.WaitState(t, ctx, suite.tasks, old.id, task.AwaitingApproval)
	if b := buildOf(t, ctx, old.id); b != firstBuild {
		t.Fatalf("the first task runs on build %q; want the first build %q", b, firstBuild)
	}

	// The rollout as an operator does it: the new build starts beside the
	// old one without taking new work, then is made current.
	secondBuild := "upgradetest-" + testenv.RandHex(4)
	second := suite.StartWorker(t, testenv.WorkerOptions{Node: "second", Binary: suite.second,
		Env: append(env, "AUTOGLM_PROMOTE="+config.PromoteNever, "AUTOGLM_BUILD_ID="+secondBuild)})
	setCurrent(t, ctx, secondBuild)

	fresh := submit(t, ctx, "new", 30)
	testenv.WaitState(t, ctx, suite.tasks, fresh.id, task.AwaitingApproval)
	approve(t, ctx, fresh.id)
	exact(t, ctx, fresh)
	if b := buildOf(t, ctx, fresh.id); b != secondBuild {
		t.Errorf("the new task ran on build %q; want the second build %q", b, secondBuild)
	}

	approve(t, ctx, old.id)
	exact(t, ctx, old)
	if b := buildOf(t, ctx, old.id); b != firstBuild {
		t.Errorf("the first task completed on build %q; want the first build %q, to which it was pinned", b, firstBuild)
	}

	// Retire the first build: nothing open is pinned to it any more.
	testenv.Eventually(t, ctx, "no open task on the first build", time.Second, func() (bool, error) {
		n, err := suite.Temporal.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Query: fmt.Sprintf("TemporalWorkerDeploymentVersion = '%s:%s' AND ExecutionStatus = 'Running'", config.DefaultDeployment, firstBuild),
		})
		return err == nil && n.GetCount() == 0, err
	})
	first.Stop(30 * time.Second)
	last := submit(t, ctx, "after", 30)
	testenv.WaitState(t, ctx, suite.tasks, last.id, task.AwaitingApproval)
	approve(t, ctx, last.id)
	exact(t, ctx, last)

	for _, w := range []*testenv.Worker{first, second} {
		b, err := os.ReadFile(w.Log)
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.ToLower(string(b)); strings.Contains(s, "tmprl1100") || strings.Contains(s, "nondetermin") {
			t.Errorf("worker %s met a non-determinism error; see %s", w.Node, w.Log)
		}
	}
	second.Stop(30 * time.Second)
}

// currentBuild waits until the control plane's deployment has a current
// version other than not, and returns its build ID.
func currentBuild(t *testing.T, ctx context.Context, not string) string {
	t.Helper()
	var build string
	h := suite.Temporal.WorkerDeploymentClient().GetHandle(config.DefaultDeployment)
	testenv.Eventually(t, ctx, "a current version of the control plane", 200*time.Millisecond, func() (bool, error) {
		d, err := h.Describe(ctx, client.WorkerDeploymentDescribeOptions{})
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if cur := d.Info.RoutingConfig.CurrentVersion; cur != nil && cur.BuildID != not {
			build = cur.BuildID
			return true, nil
		}
		return false, nil
	})
	return build
}

// setCurrent makes build current once it has polled, as `temporal
// worker deployment set-current-version` does.
func setCurrent(t *testing.T, ctx context.Context, build string) {
	t.Helper()
	h := suite.Temporal.WorkerDeploymentClient().GetHandle(config.DefaultDeployment)
	testenv.Eventually(t, ctx, "build "+build+" to poll", 200*time.Millisecond, func() (bool, error) {
		d, err := h.Describe(ctx, client.WorkerDeploymentDescribeOptions{})
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(d.Info.VersionSummaries, func(v client.WorkerDeploymentVersionSummary) bool { return v.Version.BuildID == build }), nil
	})
	if _, err := h.SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{BuildID: build, IgnoreMissingTaskQueues: true}); err != nil {
		t.Fatalf("making build %s current: %v", build, err)
	}
}

// buildOf is the build a task's workflow runs (or ran) on.
func buildOf(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	d, err := suite.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(id), "")
	if err != nil {
		t.Fatal(err)
	}
	return d.GetWorkflowExecutionInfo().GetVersioningInfo().GetDeploymentVersion().GetBuildId()
}

type input struct {
	id  string
	ids []string
}

func submit(t *testing.T, ctx context.Context, prefix string, n int) input {
	t.Helper()
	path := filepath.Join(t.TempDir(), prefix+".jsonl")
	in := input{id: prefix + "-" + taskclient.NewID()}
	var buf bytes.Buffer
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		body, _ := json.Marshal(map[string]any{"model": testmodel.DefaultModel, "messages": []map[string]string{{"role": "user", "content": "Question " + id}}})
		line, _ := json.Marshal(batch.Request{CustomID: id, Method: "POST", URL: batch.ChatCompletionsURL, Body: body})
		buf.Write(append(line, '\n'))
		in.ids = append(in.ids, id)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: in.id, Tenant: tenant, Submitter: "alice", File: path}); err != nil {
		t.Fatalf("submitting %s: %v", in.id, err)
	}
	return in
}

func approve(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: "bob"}); err != nil {
		t.Fatalf("bob's approval of %s: %v", id, err)
	}
}

// exact waits for the task and checks output.jsonl holds every input
// line once, in order, each the test model's answer, and errors.jsonl
// none.
func exact(t *testing.T, ctx context.Context, in input) {
	t.Helper()
	res, err := suite.tasks.Wait(ctx, in.id)
	if err != nil || res.State != task.Completed {
		t.Fatalf("task %s: %+v, %v; want COMPLETED", in.id, res, err)
	}
	var b bytes.Buffer
	if err := suite.tasks.Download(ctx, res.Output, &b); err != nil {
		t.Fatal(err)
	}
	var got []string
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		var l batch.OutputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Response == nil || l.Response.StatusCode != 200 {
			t.Fatalf("task %s: output line %q is not an answer (%v)", in.id, sc.Text(), err)
		}
		got = append(got, l.CustomID)
	}
	if strings.Join(got, ",") != strings.Join(in.ids, ",") || res.Counts.Completed != len(in.ids) || res.Counts.Failed != 0 {
		t.Errorf("task %s: output %v, counts %+v; want %v each once in order", in.id, got, res.Counts, in.ids)
	}
}
