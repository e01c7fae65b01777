package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// shapesScript drives the shapes of the OpenAI API that clients rely on
// with the official openai npm package: files.list pages; a batch for a
// model no node serves gets a 4xx the client does not retry; a file goes
// up in parts through the Uploads API, across a network cut; the batch
// made of it completes with its usage.
const shapesScript = `
import OpenAI, { toFile } from 'openai';
import fs from 'node:fs';

let requests = 0, cut = false;
// Counts the requests the client sends, and cuts the network once: the
// first part reaches the server but its answer never reaches the client.
const counting = async (url, init) => {
  requests++;
  const res = await fetch(url, init);
  if (!cut && String(url).includes('/parts')) { cut = true; throw new TypeError('network cut (test)'); }
  return res;
};
const client = new OpenAI({ apiKey: process.env.AUTOGLM_KEY, baseURL: process.env.AUTOGLM_URL + '/v1', fetch: counting });
const out = {};

const uploaded = [];
for (const name of ['a.jsonl', 'b.jsonl', 'c.jsonl']) {
  const f = await client.files.create({ file: await toFile(fs.readFileSync(process.env.SMALL_FILE), name), purpose: 'batch' });
  uploaded.push(f.id);
}
const firstPage = await client.files.list({ purpose: 'batch', limit: 2 });
out.firstPage = { ids: firstPage.data.map((f) => f.id), has_more: firstPage.has_more };
out.listed = [];
for await (const f of client.files.list({ purpose: 'batch', limit: 2 })) out.listed.push(f.id);
out.ascending = (await client.files.list({ purpose: 'batch', order: 'asc', limit: 100 })).data.map((f) => f.id);
out.uploaded = uploaded;

const unserved = await client.files.create({ file: fs.createReadStream(process.env.UNSERVED_FILE), purpose: 'batch' });
requests = 0;
try {
  await client.batches.create({ input_file_id: unserved.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  out.unserved = { status: 0 };
} catch (e) {
  out.unserved = { status: e.status, code: e.code, param: e.param, type: e.type, message: e.message, requests };
}

const body = fs.readFileSync(process.env.SMALL_FILE);
const half = Math.floor(body.length / 2);
const upload = await client.uploads.create({ bytes: body.length, filename: 'parts.jsonl', mime_type: 'text/jsonl', purpose: 'batch' });
const p1 = await client.uploads.parts.create(upload.id, { data: await toFile(body.subarray(0, half), 'p1') });
const p2 = await client.uploads.parts.create(upload.id, { data: await toFile(body.subarray(half), 'p2') });
const done = await client.uploads.complete(upload.id, { part_ids: [p1.id, p2.id] });
out.upload = { created: upload, completed: done, cut };
const cancelled = await client.uploads.cancel((await client.uploads.create({ bytes: 10, filename: 'x.jsonl', mime_type: 'text/jsonl', purpose: 'batch' })).id);
out.cancelled = cancelled.status;
out.content = await (await client.files.content(done.file.id)).text();

let batch = await client.batches.create({ input_file_id: done.file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
while (!['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) {
  await new Promise((r) => setTimeout(r, 200));
  batch = await client.batches.retrieve(batch.id);
}
out.batch = batch;
out.output = await (await client.files.content(batch.output_file_id)).text();
out.input = await client.files.retrieve(batch.input_file_id);
try { await client.post('/batches/' + batch.id + '/nope', {}); } catch (e) { out.unknownPath = { status: e.status, code: e.code, type: e.type }; }
try { await client.delete('/batches'); } catch (e) { out.badMethod = { status: e.status, code: e.code, type: e.type }; }
console.log(JSON.stringify(out));
`

var npmOnce struct {
	sync.Once
	dir string
	err error
}

// openaiPackage installs the openai npm package once for the package's
// tests, into the suite's folder.
func openaiPackage(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is needed for this test: ", err)
	}
	npmOnce.Do(func() {
		npmOnce.dir = filepath.Join(suite.Dir, "npm")
		out, err := exec.Command("npm", "install", "--prefix", npmOnce.dir, "--no-audit", "--no-fund", "openai").CombinedOutput()
		if err != nil {
			npmOnce.err = fmt.Errorf("npm install openai: %v\n%s", err, out)
		}
	})
	if npmOnce.err != nil {
		t.Fatal(npmOnce.err)
	}
	return npmOnce.dir
}

// TestOpenAIShapes: the shapes OpenAI's clients depend on, as the
// official openai npm package reads them, through an API server whose
// submits check the policy and the fleet as in production.
func TestOpenAIShapes(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	dir := openaiPackage(t)
	src := suite.api.Policy
	api := &server.Server{Tasks: &taskclient.Client{Temporal: suite.Temporal, Store: suite.Store, Signer: suite.Signer, Policy: src}, Policy: src, TempDir: suite.Dir, Log: suite.api.Log}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: api.Handler()}
	go hs.Serve(ln)
	defer hs.Close()

	small, unserved := filepath.Join(dir, "small.jsonl"), filepath.Join(dir, "unserved.jsonl")
	var b bytes.Buffer
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&b, `{"custom_id":"up-%d","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-test","messages":[{"role":"user","content":"count to %d"}]}}`+"\n", i, i)
	}
	if err := os.WriteFile(small, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unserved, []byte(`{"custom_id":"u-1","method":"POST","url":"/v1/chat/completions","body":{"model":"glm-4-unserved","messages":[{"role":"user","content":"hi"}]}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "shapes.mjs")
	if err := os.WriteFile(script, []byte(shapesScript), 0o644); err != nil {
		t.Fatal(err)
	}
	node := exec.CommandContext(ctx, "node", script)
	node.Dir = dir
	node.Env = append(os.Environ(), "AUTOGLM_KEY="+suite.keys["dave"], "AUTOGLM_URL=http://"+ln.Addr().String(),
		"SMALL_FILE="+small, "UNSERVED_FILE="+unserved)
	node.Stderr = os.Stderr
	stdout, err := node.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stdout)
	}
	var out struct {
		FirstPage struct {
			IDs     []string
			HasMore bool `json:"has_more"`
		}
		Listed, Ascending, Uploaded []string
		Unserved                    struct {
			Status, Requests  int
			Code, Param, Type string
			Message           string
		}
		Upload struct {
			Created, Completed server.Upload
			Cut                bool
		}
		Cancelled, Content, Output string
		Batch                      struct {
			server.Batch
			Usage *server.BatchUsage `json:"usage"`
		}
		Input       server.File
		UnknownPath struct {
			Status     int
			Code, Type string
		}
		BadMethod struct {
			Status     int
			Code, Type string
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	sc.Buffer(nil, 4<<20)
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &out) != nil {
		t.Fatalf("the script's output: %s", stdout)
	}

	// files.list: newest first, two a page, every page followed.
	u := out.Uploaded
	if want := []string{u[2], u[1]}; !slices.Equal(out.FirstPage.IDs, want) || !out.FirstPage.HasMore {
		t.Errorf("first page %v (has_more %v), want %v and more", out.FirstPage.IDs, out.FirstPage.HasMore, want)
	}
	if i := slices.Index(out.Listed, u[2]); i < 0 || len(out.Listed) < i+3 || !slices.Equal(out.Listed[i:i+3], []string{u[2], u[1], u[0]}) {
		t.Errorf("paging listed %v; want %v in it, newest first", out.Listed, u)
	}
	if i := slices.Index(out.Ascending, u[0]); i < 0 || len(out.Ascending) < i+3 || !slices.Equal(out.Ascending[i:i+3], u) {
		t.Errorf("order=asc listed %v", out.Ascending)
	}

	// A model no node serves: a 4xx, sent once.
	if out.Unserved.Status != http.StatusBadRequest || out.Unserved.Requests != 1 || out.Unserved.Code != "model_not_available" || out.Unserved.Param != "model" || out.Unserved.Type != "invalid_request_error" {
		t.Errorf("a batch for an unserved model: %+v", out.Unserved)
	}
	if strings.Contains(out.Unserved.Message, "autoglm-server-") {
		t.Errorf("the message names the server's spool file: %s", out.Unserved.Message)
	}

	// The upload: created pending with Unix times, completed into a file
	// of exactly the parts' bytes, though a part's answer was cut.
	c := out.Upload.Created
	if c.Status != "pending" || c.Object != "upload" || c.ExpiresAt-c.CreatedAt != 3600 || c.CreatedAt < time.Now().Add(-time.Hour).Unix() {
		t.Errorf("created upload %+v", c)
	}
	if !out.Upload.Cut || out.Upload.Completed.Status != "completed" || out.Upload.Completed.File == nil || out.Content != b.String() {
		t.Errorf("completed upload %+v (cut %v); content %q", out.Upload.Completed, out.Upload.Cut, out.Content)
	}
	if out.Cancelled != "cancelled" {
		t.Errorf("a cancelled upload is %q", out.Cancelled)
	}

	// The batch of the uploaded file: its files set, its times Unix, its usage.
	bt := out.Batch
	if bt.Status != "completed" || bt.RequestCounts.Completed != 3 || strings.Count(out.Output, "\n") != 3 {
		t.Fatalf("batch %+v, output %q", bt.Batch, out.Output)
	}
	if bt.InputFileID != out.Upload.Completed.File.ID || out.Input.ID != bt.InputFileID || bt.OutputFileID == nil || bt.ErrorFileID != nil && *bt.ErrorFileID == "" {
		t.Errorf("batch files: input %q (retrieved %q), output %v, error %v", bt.InputFileID, out.Input.ID, bt.OutputFileID, bt.ErrorFileID)
	}
	now := time.Now().Unix()
	for name, v := range map[string]*int64{"expires_at": bt.ExpiresAt, "completed_at": bt.CompletedAt, "in_progress_at": bt.InProgressAt} {
		if v == nil || *v < now-3600 || *v > now+25*3600 {
			t.Errorf("%s is %v, not a Unix time of today", name, v)
		}
	}
	if bt.Usage == nil {
		t.Fatalf("the batch has no usage")
	}
	var sum int64
	for _, line := range strings.Split(strings.TrimSpace(out.Output), "\n") {
		var l struct {
			Response struct {
				Body struct {
					Usage struct {
						TotalTokens int64 `json:"total_tokens"`
					} `json:"usage"`
				} `json:"body"`
			} `json:"response"`
		}
		_ = json.Unmarshal([]byte(line), &l)
		sum += l.Response.Body.Usage.TotalTokens
	}
	if sum == 0 || bt.Usage.TotalTokens != sum || bt.Usage.InputTokens+bt.Usage.OutputTokens != sum {
		t.Errorf("batch usage %+v; the output's answers used %d tokens", *bt.Usage, sum)
	}
	t.Logf("batch usage %+v; output total %d", *bt.Usage, sum)

	// Errors in OpenAI's shape on routes that do not exist.
	if out.UnknownPath.Status != http.StatusNotFound || out.UnknownPath.Code != "unknown_url" || out.BadMethod.Status != http.StatusMethodNotAllowed || out.BadMethod.Code != "method_not_allowed" {
		t.Errorf("unknown path %+v, unknown method %+v", out.UnknownPath, out.BadMethod)
	}
}
