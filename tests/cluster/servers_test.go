package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/cluster"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// openai calls an OpenAI route on base as user and decodes the answer.
func openai(t *testing.T, ctx context.Context, base, user, method, path, contentType string, body io.Reader, v any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, method, base+path, body)
	req.Header.Set("Authorization", "Bearer "+suite.cl.Keys[user])
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, base, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s%s as %s: %s\n%s", method, base, path, user, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, b)
	}
}

// Two API servers on the same cluster serve the same users: a key works
// on both; a task submitted on one is approved on the other and followed
// to its end there by the changes long poll; an OpenAI file uploaded to
// one becomes a batch on the other, which the first reports completed.
// Neither server holds state the other needs.
func TestTwoAPIServers(t *testing.T) {
	ctx := testenv.Context(t, 5*time.Minute)
	urlB, procB, err := suite.cl.StartServer(ctx, "server-b", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { procB.Stop(10 * time.Second) })
	urlA := suite.cl.ServerURL
	aliceA, aliceB := apiclient.New(urlA, suite.cl.Keys["alice"]), apiclient.New(urlB, suite.cl.Keys["alice"])
	bobB := apiclient.New(urlB, suite.cl.Keys["bob"])
	for _, c := range []*apiclient.Client{aliceA, aliceB} {
		if w, err := c.Whoami(ctx); err != nil || w.User != "alice" || w.Tenant != tenant {
			t.Fatalf("alice's key: %+v, %v", w, err)
		}
	}

	in := writeBatch(t, "two-servers", 20) // over the auto-approve limit
	sub, err := aliceA.Submit(ctx, taskclient.SubmitRequest{Tenant: tenant, File: in.path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var after int64
	var states []task.State
	for final := false; !final; {
		cs, err := aliceB.Changes(ctx, sub.ID, after, 20*time.Second)
		if err != nil {
			t.Fatalf("changes of %s on server B: %v", sub.ID, err)
		}
		for _, e := range cs.Changes {
			after = e.Seq
			states = append(states, e.State)
			if e.State == task.AwaitingApproval {
				if _, err := bobB.Decide(ctx, sub.ID, task.UpdateApprove, server.DecisionBody{Reason: "approved on server B"}); err != nil {
					t.Fatalf("bob's approval on server B: %v", err)
				}
			}
		}
		final = cs.Final
	}
	st, err := aliceA.Status(ctx, sub.ID)
	if err != nil || st.State != task.Completed || states[len(states)-1] != task.Completed {
		t.Fatalf("task %s: server A says %+v (%v), server B's changes %v; want COMPLETED on both", sub.ID, st.State, err, states)
	}
	t.Logf("task %s submitted on A, approved and followed on B: %v", sub.ID, states)

	// OpenAI Files and Batches across the two.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "requests.jsonl")
	b, _ := os.ReadFile(writeBatch(t, "openai", 5).path)
	fw.Write(b)
	mw.Close()
	var f server.File
	openai(t, ctx, urlA, "alice", "POST", "/v1/files", mw.FormDataContentType(), &body, &f)
	var created server.Batch
	req, _ := json.Marshal(map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	openai(t, ctx, urlB, "alice", "POST", "/v1/batches", "application/json", bytes.NewReader(req), &created)
	testenv.Eventually(t, ctx, "batch "+created.ID+" to be completed on server A", 200*time.Millisecond, func() (bool, error) {
		var got server.Batch
		openai(t, ctx, urlA, "alice", "GET", "/v1/batches/"+created.ID, "", nil, &got)
		if got.Status == "failed" || got.Status == "cancelled" || got.Status == "expired" {
			t.Fatalf("batch %s is %s", got.ID, got.Status)
		}
		return got.Status == "completed", nil
	})
}

// A rolling upgrade, the README's way: while a batch runs, the nodes
// serving its model are stopped (SIGTERM: they checkpoint) and started
// from a new build one after the other, taking no new task
// (AUTOGLM_PROMOTE=never); `autoglm setup --current-build` makes the new
// build current; a task submitted then runs on it, and the batch, pinned
// to the old build that gpu-2 still runs, continues from its checkpoints
// and completes with every line once.
func TestNodesRestartedWithANewBuild(t *testing.T) {
	ctx := testenv.Context(t, 8*time.Minute)
	newCLI := filepath.Join(t.TempDir(), "autoglm-new")
	// Another build of the same source: stripped, so another executable
	// and so another build ID (the executable's sha256).
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags=-s -w", "-o", newCLI, "./starter")
	cmd.Dir = suite.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the new CLI: %v\n%s", err, out)
	}
	b, err := os.ReadFile(newCLI)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	newBuild := hex.EncodeToString(sum[:])[:16]
	suite.cl.Model.SetFaults(testmodel.Faults{Latency: 100 * time.Millisecond})
	t.Cleanup(func() { suite.cl.Model.SetFaults(testmodel.Faults{Latency: 20 * time.Millisecond}) })
	in := writeBatch(t, "rolling", 3000)
	id := submitApproved(t, ctx, "rolling", in)
	waitDone(t, ctx, id, 300)
	for _, name := range []string{"gpu-0", "gpu-1"} {
		var node cluster.Node
		for _, n := range cluster.Nodes {
			if n.Name == name {
				node = n
			}
		}
		for _, tg := range suite.cl.Nodes() {
			if tg.Name == name && tg.Proc.Exited() == nil {
				if err := tg.Proc.Stop(time.Minute); err != nil {
					t.Fatal(err)
				}
			}
		}
		st, _ := suite.tasks.Status(ctx, id)
		t.Logf("node %s stopped with %d of %d answered; starting it from build %s", name, st.Progress.Done(), len(in.ids), newBuild)
		if _, err := suite.cl.StartNode(ctx, node, newCLI, "AUTOGLM_PROMOTE=never"); err != nil {
			t.Fatal(err)
		}
	}
	if r := suite.RunCLI(t, ctx, testenv.CLIOptions{}, "setup", "--current-build", newBuild); r.Code != 0 {
		t.Fatalf("setup --current-build %s: exit %d\n%s", newBuild, r.Code, r.Output)
	}
	d, err := suite.Temporal.WorkerDeploymentClient().GetHandle(config.DefaultDeployment).Describe(ctx, client.WorkerDeploymentDescribeOptions{})
	if err != nil || d.Info.RoutingConfig.CurrentVersion == nil || d.Info.RoutingConfig.CurrentVersion.BuildID != newBuild {
		t.Fatalf("the control plane's current version after the rollout: %+v, %v; want build %s", d.Info.RoutingConfig, err, newBuild)
	}
	prompt := "after-rollout-" + testenv.RandHex(3)
	if _, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: prompt, Tenant: tenant, Submitter: "alice", Model: model, Prompt: "hello from the new build"}); err != nil {
		t.Fatal(err)
	}
	if res, err := suite.tasks.Wait(ctx, prompt); err != nil || res.State != task.Completed {
		t.Fatalf("a task after the rollout: %+v, %v", res.State, err)
	}
	builds := map[string]string{}
	for what, wid := range map[string]string{"the batch": id, "the task after the rollout": prompt} {
		desc, err := suite.Temporal.DescribeWorkflowExecution(ctx, task.WorkflowID(wid), "")
		if err != nil {
			t.Fatal(err)
		}
		builds[what] = desc.GetWorkflowExecutionInfo().GetVersioningInfo().GetDeploymentVersion().GetBuildId()
	}
	if builds["the task after the rollout"] != newBuild || builds["the batch"] == newBuild || builds["the batch"] == "" {
		t.Errorf("builds %v; want the batch on the old build and the task after the rollout on %s", builds, newBuild)
	}
	lines, unique := exact(t, ctx, id, in)
	t.Logf("task %s COMPLETED across the upgrade on build %s: %d lines, %d unique custom_ids; a task after the rollout ran on build %s", id, builds["the batch"], lines, unique, newBuild)
}
