package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The script drives the server with the official openai npm package,
// exactly as a user's program would: upload, create, poll, download.
const openaiScript = `
import OpenAI from 'openai';
import fs from 'node:fs';

const client = new OpenAI({ apiKey: process.env.AUTOGLM_KEY, baseURL: process.env.AUTOGLM_URL + '/v1' });
const file = await client.files.create({ file: fs.createReadStream(process.env.BATCH_FILE), purpose: 'batch' });
let batch = await client.batches.create({
  input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h',
  metadata: { project: 'npm' },
});
console.log(JSON.stringify({ event: 'created', batch: batch.id, file: file.id, status: batch.status }));
const seen = [batch.status];
while (!['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) {
  await new Promise((r) => setTimeout(r, 200));
  batch = await client.batches.retrieve(batch.id);
  if (seen[seen.length - 1] !== batch.status) seen.push(batch.status);
}
const output = await (await client.files.content(batch.output_file_id)).text();
const errors = await (await client.files.content(batch.error_file_id)).text();
const info = await client.files.retrieve(file.id);
const listed = [];
for await (const b of client.batches.list({ limit: 2 })) listed.push(b.id);
let missing = null;
try { await client.batches.retrieve('batch_nope'); } catch (e) { missing = { status: e.status, code: e.code, type: e.type }; }
let badKey = null;
try { await new OpenAI({ apiKey: 'agk_wrong', baseURL: process.env.AUTOGLM_URL + '/v1' }).batches.retrieve(batch.id); } catch (e) { badKey = { status: e.status, code: e.code }; }
console.log(JSON.stringify({ event: 'done', batch, seen, output, errors, file: info, listed, missing, badKey }));
`

// TestOpenAIClient: the official openai npm package, installed into a
// temporary folder, uploads a batch file, creates a batch, polls it while a
// reviewer approves it through the native API (it stays "validating"
// until then), and downloads the output and error files.
func TestOpenAIClient(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	dir := openaiPackage(t)
	script := filepath.Join(dir, "batch.mjs")
	input := filepath.Join(dir, "requests.jsonl")
	if err := os.WriteFile(script, []byte(openaiScript), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(input, batchFile(12, "npm"), 0o644); err != nil {
		t.Fatal(err)
	}
	node := exec.CommandContext(ctx, "node", script)
	node.Dir = dir
	node.Env = append(os.Environ(), "AUTOGLM_KEY="+suite.keys["alice"], "AUTOGLM_URL="+suite.url, "BATCH_FILE="+input)
	node.Stderr = os.Stderr
	stdout, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	var created struct{ Batch, File, Status string }
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &created) != nil {
		t.Fatalf("the script did not create a batch: %q", lines.Text())
	}
	id := strings.TrimPrefix(created.Batch, server.BatchIDPrefix)
	waitState(t, ctx, id, task.AwaitingApproval)
	var b server.Batch
	must(t, ctx, http.StatusOK, "alice", "GET", "/v1/batches/"+created.Batch, nil, &b)
	if b.Status != "validating" {
		t.Errorf("a batch awaiting approval is %q, want validating", b.Status)
	}
	var st server.TaskStatus
	must(t, ctx, http.StatusOK, "bob", "POST", "/api/v1/tasks/"+id+"/approve", server.DecisionBody{Reason: "npm batch looks fine"}, &st)

	if !lines.Scan() {
		t.Fatalf("the script ended without a result: %v", node.Wait())
	}
	var done struct {
		Batch  server.Batch
		Seen   []string
		Output string
		Errors string
		File   server.File
		Listed []string
		// Missing and BadKey are the openai package's reading of the
		// server's errors.
		Missing struct {
			Status int
			Code   string
			Type   string
		}
		BadKey struct {
			Status int
			Code   string
		}
	}
	if err := json.Unmarshal(lines.Bytes(), &done); err != nil {
		t.Fatalf("the script's result: %v", err)
	}
	if err := node.Wait(); err != nil {
		t.Fatalf("node: %v", err)
	}
	if done.Batch.Status != "completed" || done.Batch.RequestCounts.Completed != 12 || done.Batch.RequestCounts.Failed != 1 {
		t.Errorf("batch %+v", done.Batch)
	}
	if done.Seen[0] != "validating" || done.Seen[len(done.Seen)-1] != "completed" || slices.Contains(done.Seen, "failed") {
		t.Errorf("statuses seen by the client: %v", done.Seen)
	}
	if n := strings.Count(done.Output, "\n"); n != 12 || !strings.Contains(done.Output, `"custom_id":"npm-12"`) {
		t.Errorf("output file: %d lines\n%s", n, done.Output)
	}
	if n := strings.Count(done.Errors, "\n"); n != 1 || !strings.Contains(done.Errors, "npm-broken") && !strings.Contains(done.Errors, "line") {
		t.Errorf("error file: %d lines\n%s", n, done.Errors)
	}
	if done.File.ID != created.File || done.File.Purpose != "batch" || done.File.Bytes == 0 {
		t.Errorf("file %+v", done.File)
	}
	if !slices.Contains(done.Listed, created.Batch) {
		t.Errorf("batches list %v has no %s", done.Listed, created.Batch)
	}
	if done.Missing.Status != http.StatusNotFound || done.BadKey.Status != http.StatusUnauthorized || done.BadKey.Code != "invalid_api_key" {
		t.Errorf("errors as the openai package reads them: missing %+v, bad key %+v", done.Missing, done.BadKey)
	}
	if done.Batch.Metadata["project"] != "npm" || done.Batch.CompletedAt == nil || done.Batch.InProgressAt == nil {
		t.Errorf("batch fields: metadata %v, completed_at %v, in_progress_at %v", done.Batch.Metadata, done.Batch.CompletedAt, done.Batch.InProgressAt)
	}
	t.Logf("openai npm client: statuses %v, %d output lines, %d error lines", done.Seen, strings.Count(done.Output, "\n"), strings.Count(done.Errors, "\n"))
}
