package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/llm"
	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// The tuned model is served back: a fine-tuning job on the test trainer
// publishes ft:glm-4-test:demo:served:<id>; the node whose model server
// loads LoRA adapters (vLLM's API, on its own test model server) fetches
// it into its cache and loads it from there, and a batch of demo's that
// names it runs on that node, never on the suite's node, which serves the
// base model but loads no adapters. Tenant acme is refused the model at
// submit (native and OpenAI routes) and at authorization (a start sent
// to Temporal directly).
func TestFineTunedModelIsServedBackToBatches(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	lora := testmodel.New(testmodel.Options{})
	if err := lora.Start(); err != nil {
		t.Fatal(err)
	}
	defer lora.Close()
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node, cfg.Role = "server-lora", config.RoleNode
	cfg.LLM.BaseURL, cfg.LoRAAdapters = lora.URL(), llm.LoRAVLLM
	cfg.CacheDir = filepath.Join(suite.Dir, "cache-server-lora")
	suite.StartWorkerInProcess(t, cfg, 2*time.Minute)

	alice := apiclient.New(suite.url, suite.keys["alice"])
	sub, err := alice.FineTune(ctx, taskclient.SubmitRequest{
		Model: "glm-4-test", File: chatFile(t, 10),
		FineTune: &task.FineTune{Suffix: "served", Seed: 5, Hyperparameters: task.Hyperparameters{NEpochs: task.Number(1), BatchSize: task.Number(8)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	name := "ft:glm-4-test:demo:served:" + sub.ID
	waitState(t, ctx, sub.ID, task.Completed)

	// Loaded by the node that loads adapters, from a folder of its cache
	// whose files are the published model's.
	load, err := lora.WaitLoRALoad(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cfg.CacheDir, "demo", name); load.API != llm.LoRAVLLM || load.Path != want {
		t.Fatalf("load call %+v; want the vllm API and lora_path %s", load, want)
	}
	var meta task.CacheMeta
	rc, _, err := suite.Store.Get(ctx, task.FineTunedPrefix("demo", name)+task.CacheMetaName)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(rc).Decode(&meta)
	rc.Close()
	if err != nil || len(meta.Files) == 0 {
		t.Fatalf("the model's manifest: %+v, %v", meta, err)
	}
	for _, f := range meta.Files {
		if fi, err := os.Stat(filepath.Join(load.Path, f.Name)); err != nil || fi.Size() != f.Size {
			t.Errorf("%s in the node's cache: %v", f.Name, err)
		}
	}
	// The suite's node serves the base model only: its model server was
	// asked to load nothing, and refuses the name as vLLM does.
	if loads := suite.model.LoRALoads(); len(loads) != 0 {
		t.Errorf("the base-only node's model server loaded %+v", loads)
	}
	if code := chatStatus(t, ctx, suite.model.URL(), name); code != http.StatusNotFound {
		t.Errorf("the base-only model server answered %d for %s; want 404", code, name)
	}

	// A batch of demo's on the tuned model runs on the node that loaded it.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = suite.tasks.WaitServed(wctx, name)
	cancel()
	if err != nil {
		t.Fatalf("no node announced %s: %v", name, err)
	}
	file := filepath.Join(t.TempDir(), "ft.jsonl")
	if err := os.WriteFile(file, []byte(modelBatch(name, 4)), 0o644); err != nil {
		t.Fatal(err)
	}
	batch, err := alice.Submit(ctx, taskclient.SubmitRequest{File: file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, batch.ID, task.Completed)
	st, err := alice.Status(ctx, batch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "server-lora" || st.Model != name || st.Progress.Completed != 4 {
		t.Fatalf("the batch ran on %q, model %q, %d of 4 completed; want server-lora, %s, 4", st.Node, st.Model, st.Progress.Completed, name)
	}
	outKey, _ := storage.Key(storage.Data, "demo", batch.ID, "output.jsonl")
	for _, line := range objectLines(t, ctx, outKey) {
		var out struct {
			Response struct {
				StatusCode int `json:"status_code"`
				Body       struct {
					Model string `json:"model"`
				} `json:"body"`
			} `json:"response"`
		}
		if json.Unmarshal([]byte(line), &out) != nil || out.Response.StatusCode != 200 || out.Response.Body.Model != name {
			t.Errorf("output line %s; want an answer of %s", line, name)
		}
	}

	// Tenant acme may not use demo's model: refused at submit, through the
	// native API and the OpenAI Batches API, with the same typed error, by
	// a server whose submit checks the policy as `autoglm server`'s does.
	want := fmt.Sprintf("model %s is a fine-tuned model of tenant demo: only that tenant may use it, not acme", name)
	front := checkingServer(t)
	zed := apiclient.New(front, suite.keys["zed"])
	_, err = zed.Submit(ctx, taskclient.SubmitRequest{File: file}, nil)
	if task.TypeOf(err) != task.ModelNotAllowed || !strings.Contains(err.Error(), want) {
		t.Errorf("zed's submit: %v (type %q); want ModelNotAllowed: %s", err, task.TypeOf(err), want)
	}
	code, body := openAIBatch(t, ctx, front, "zed", modelBatch(name, 2))
	var oe struct {
		Error struct{ Message, Code string }
	}
	if code != http.StatusForbidden || json.Unmarshal([]byte(body), &oe) != nil || oe.Error.Message != want || oe.Error.Code != "permission_denied" {
		t.Errorf("zed's OpenAI batch: %d %s; want 403 permission_denied: %s", code, body, want)
	}
	// alice, whose tenant owns it, passes the same checks.
	if again, err := apiclient.New(front, suite.keys["alice"]).Submit(ctx, taskclient.SubmitRequest{File: file}, nil); err != nil {
		t.Errorf("alice's submit through the checking server: %v", err)
	} else {
		waitState(t, ctx, again.ID, task.Completed)
	}
	// And at the engine, for a start that skipped the server's checks.
	in, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{Tenant: "acme", Submitter: "zed", Model: name, Prompt: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = suite.tasks.Wait(ctx, in.ID) // its outcome is in the status
	st2, err := suite.tasks.Status(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st2.State != task.Failed || st2.LastErrorType != task.ModelNotAllowed || !strings.Contains(st2.LastError, want) {
		t.Errorf("a direct start for acme: %s, %s: %q; want FAILED, ModelNotAllowed: %s", st2.State, st2.LastErrorType, st2.LastError, want)
	}
}

// checkingServer is an API server on the suite's stack whose submit
// checks tenant, model and fleet before anything is stored, as `autoglm
// server`'s does (the suite's own leaves those checks to the engine).
func checkingServer(t *testing.T) string {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	tasks := &taskclient.Client{Temporal: suite.Temporal, Store: suite.Store, Signer: suite.Signer, Policy: suite.api.Policy}
	hs := httptest.NewServer((&server.Server{Tasks: tasks, Policy: suite.api.Policy, TempDir: t.TempDir(), Log: log}).Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// openAIBatch uploads content as a batch file and creates a batch of it
// through the OpenAI routes of the server at base, as user; it returns
// the batch creation's status and body.
func openAIBatch(t *testing.T, ctx context.Context, base, user, content string) (int, string) {
	t.Helper()
	send := func(req *http.Request) (int, []byte) {
		req.Header.Set("Authorization", "Bearer "+suite.keys[user])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "requests.jsonl")
	fw.Write([]byte(content))
	mw.Close()
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/files", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	code, out := send(req)
	var f server.File
	if code != http.StatusOK || json.Unmarshal(out, &f) != nil {
		t.Fatalf("uploading as %s: %d %s", user, code, out)
	}
	j, _ := json.Marshal(map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	req, _ = http.NewRequestWithContext(ctx, "POST", base+"/v1/batches", bytes.NewReader(j))
	req.Header.Set("Content-Type", "application/json")
	code, out = send(req)
	return code, string(out)
}

// modelBatch is an OpenAI Batch file of n requests to model.
func modelBatch(model string, n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"custom_id":"ft-%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"what is %d plus %d?"}]}}`+"\n", i, model, i, i)
	}
	return b.String()
}

// chatStatus is the status a model server answers one chat request for
// model with.
func chatStatus(t *testing.T, ctx context.Context, base, model string) int {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, model)
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// objectLines are the lines of an object in the suite's bucket.
func objectLines(t *testing.T, ctx context.Context, key string) []string {
	t.Helper()
	rc, _, err := suite.Store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []string
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
