package server

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
)

// The script drives the fine-tuning jobs API with the official openai npm
// package as a user's program would: alice uploads a training file and
// runs one job to the end, reads its events (paged by the client, five at
// a time) and checkpoints; a second, long job is paused and resumed by
// olga, an operator, and cancelled by alice; zed, of tenant acme, finds
// none of it.
const openaiFineTuneScript = `
import OpenAI from 'openai';
import fs from 'node:fs';

const base = process.env.AUTOGLM_URL + '/v1';
const alice = new OpenAI({ apiKey: process.env.ALICE_KEY, baseURL: base });
const olga = new OpenAI({ apiKey: process.env.OLGA_KEY, baseURL: base });
const zed = new OpenAI({ apiKey: process.env.ZED_KEY, baseURL: base });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (id, statuses) => {
  for (;;) {
    const job = await alice.fineTuning.jobs.retrieve(id);
    if (statuses.includes(job.status)) return job;
    if (['failed', 'cancelled', 'succeeded'].includes(job.status)) throw new Error('job ' + id + ' is ' + job.status);
    await sleep(200);
  }
};

const file = await alice.files.create({ file: fs.createReadStream(process.env.TRAIN_FILE), purpose: 'fine-tune' });
let job = await alice.fineTuning.jobs.create({
  model: 'glm-4-test', training_file: file.id, suffix: 'npm', seed: 11,
  method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 1, batch_size: 8 } } },
});
const created = job.status;
job = await until(job.id, ['succeeded']);
const events = [];
for await (const e of alice.fineTuning.jobs.listEvents(job.id, { limit: 5 })) events.push(e);
const checkpoints = [];
for await (const c of alice.fineTuning.jobs.checkpoints.list(job.id)) checkpoints.push(c);

let long = await alice.fineTuning.jobs.create({
  model: 'glm-4-test', training_file: file.id,
  method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 50, batch_size: 1 } } },
});
const listed = [];
for await (const j of alice.fineTuning.jobs.list({ limit: 2 })) listed.push(j.id);
await until(long.id, ['running']);
let refused = null;
try { await alice.fineTuning.jobs.pause(long.id); } catch (e) { refused = { status: e.status, code: e.code }; }
const paused = await olga.fineTuning.jobs.pause(long.id);
let pausedStatus = paused.status;
// The trainer saves and stops before the job may resume.
for (;;) {
  const n = (await alice.fineTuning.jobs.listEvents(long.id, { limit: 100 })).data.filter((e) => e.message.startsWith('PAUSED')).length;
  if (n > 0) break;
  await sleep(200);
}
const resumed = await olga.fineTuning.jobs.resume(long.id);
const cancelled = await alice.fineTuning.jobs.cancel(long.id);
long = await until(long.id, ['cancelled']);

const other = { listed: [] };
for await (const j of zed.fineTuning.jobs.list()) other.listed.push(j.id);
for (const [name, call] of Object.entries({
  retrieve: () => zed.fineTuning.jobs.retrieve(job.id),
  events: () => zed.fineTuning.jobs.listEvents(job.id),
  checkpoints: () => zed.fineTuning.jobs.checkpoints.list(job.id),
  file: () => zed.files.retrieve(file.id),
  cancel: () => zed.fineTuning.jobs.cancel(long.id),
})) {
  try { await call(); other[name] = 200; } catch (e) { other[name] = e.status; }
}
console.log(JSON.stringify({ file: file.id, created, job, listed, events, checkpoints, long, refused,
  pausedStatus, resumed: resumed.status, cancelled: cancelled.status, other }));
`

// TestOpenAIClientFineTuning: the official openai npm package's
// fineTuning.jobs.create, list, retrieve, listEvents (the loss curve as
// metrics events, paged by the client), checkpoints.list, pause, resume
// and cancel against the server, with the roles of the task verbs; a
// tenant-B key (zed of acme) sees none of tenant demo's jobs, files,
// events or checkpoints.
func TestOpenAIClientFineTuning(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	// Slow enough for the long job to be caught training; the short one's
	// steps then take a few seconds.
	t.Setenv("TESTTRAINER_STEP_DELAY", "50ms")
	dir := openaiPackage(t)
	script := filepath.Join(dir, "finetune.mjs")
	if err := os.WriteFile(script, []byte(openaiFineTuneScript), 0o644); err != nil {
		t.Fatal(err)
	}
	node := exec.CommandContext(ctx, "node", script)
	node.Dir = dir
	node.Env = append(os.Environ(), "ALICE_KEY="+suite.keys["alice"], "OLGA_KEY="+suite.keys["olga"], "ZED_KEY="+suite.keys["zed"],
		"AUTOGLM_URL="+suite.url, "TRAIN_FILE="+chatFile(t, 10))
	node.Stderr = os.Stderr
	out, err := node.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var got struct {
		File        string
		Created     string
		Job         server.FineTuningJob
		Listed      []string
		Events      []server.FineTuningJobEvent
		Checkpoints []server.FineTuningJobCheckpoint
		Long        server.FineTuningJob
		Refused     struct {
			Status int
			Code   string
		}
		PausedStatus, Resumed, Cancelled string
		Other                            struct {
			Listed                                      []string
			Retrieve, Events, Checkpoints, File, Cancel int
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("the script's result: %v\n%s", err, out)
	}
	id := strings.TrimPrefix(got.Job.ID, server.FineTuneJobIDPrefix)
	if got.Job.Status != "succeeded" || got.Job.FineTunedModel == nil || *got.Job.FineTunedModel != "ft:glm-4-test:demo:npm:"+id || got.Job.TrainingFile != got.File || got.Created == "failed" || got.Created == "cancelled" {
		t.Errorf("job created %s, ended %+v", got.Created, got.Job)
	}
	if !slices.Contains(got.Listed, got.Job.ID) || !slices.Contains(got.Listed, got.Long.ID) {
		t.Errorf("jobs.list %v lacks %s or %s", got.Listed, got.Job.ID, got.Long.ID)
	}
	// Newest first, each once; the loss curve: one metrics event per
	// step the trainer logged, up to the last.
	var steps []int
	ids := map[string]bool{}
	for i, e := range got.Events {
		if e.Object != "fine_tuning.job.event" || ids[e.ID] || i > 0 && e.CreatedAt > got.Events[i-1].CreatedAt {
			t.Errorf("event %d: %+v", i, e)
		}
		ids[e.ID] = true
		if e.Type == "metrics" {
			loss, ok := e.Data["train_loss"].(float64)
			step, _ := e.Data["step"].(float64)
			if !ok || loss <= 0 {
				t.Errorf("metrics event %+v", e)
			}
			steps = append(steps, int(step))
		}
	}
	slices.Reverse(steps)
	if len(steps) < 2 || !contiguous(steps) {
		t.Fatalf("metrics events at steps %v, want 1, 2, 3, …", steps)
	}
	// The kept checkpoints (max_keep 2) before the final model, newest
	// first.
	if n := len(got.Checkpoints); n == 0 || n > 2 {
		t.Errorf("%d checkpoints listed: %+v", n, got.Checkpoints)
	}
	for i, c := range got.Checkpoints {
		if c.Object != "fine_tuning.job.checkpoint" || c.FineTuningJobID != got.Job.ID || c.StepNumber == 0 || c.StepNumber >= steps[len(steps)-1] ||
			c.Metrics.Step != float64(c.StepNumber) || c.Metrics.TrainLoss <= 0 || !strings.Contains(c.FineTunedModelCheckpoint, "ckpt-step-") ||
			i > 0 && c.StepNumber >= got.Checkpoints[i-1].StepNumber {
			t.Errorf("checkpoint %d: %+v", i, c)
		}
	}
	if got.Refused.Status != 403 || got.PausedStatus != "queued" || got.Cancelled != "cancelled" && got.Long.Status != "cancelled" || got.Long.Status != "cancelled" {
		t.Errorf("pause by a submitter %+v; paused %s, resumed %s, cancelled %s, ended %s", got.Refused, got.PausedStatus, got.Resumed, got.Cancelled, got.Long.Status)
	}
	o := got.Other
	if len(o.Listed) > 0 && (slices.Contains(o.Listed, got.Job.ID) || slices.Contains(o.Listed, got.Long.ID)) {
		t.Errorf("zed's list %v holds demo's jobs", o.Listed)
	}
	for what, code := range map[string]int{"retrieve": o.Retrieve, "events": o.Events, "checkpoints": o.Checkpoints, "file": o.File, "cancel": o.Cancel} {
		if code != 404 {
			t.Errorf("zed of acme, %s of demo's job: %d, want 404", what, code)
		}
	}
	t.Logf("openai npm client: %d events (%d metrics), %d checkpoints, long job %s", len(got.Events), len(steps), len(got.Checkpoints), got.Long.Status)
}
