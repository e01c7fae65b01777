package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"go.temporal.io/sdk/client"

	"github.com/dustin/go-humanize"
	"go.temporal.io/sdk/activity"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// registerFleet adds the fleet's workflows and activities: the model
// mirror and fleet commands on the shared queue (any worker may run
// them), and on the node's own queue what acts on this process and its
// disk (fleet command actions, the model cache). It reads
//
//	AUTOGLM_HF_ENDPOINT, AUTOGLM_HF_TOKEN  the model hub (see model.UpstreamFromEnv)
//	AUTOGLM_MIRROR_STAGING_DIR             where mirrored files are staged (system temp)
//	AUTOGLM_CACHE_BUDGET                   its size bound, e.g. 500GiB (none)
func registerFleet(shared, node sdkworker.Worker, acts *activities.Activities, pollers *modelPollers, cacheDir string) (*model.Cache, error) {
	up, err := model.UpstreamFromEnv()
	if err != nil {
		return nil, err
	}
	shared.RegisterWorkflowWithOptions(workflows.MirrorWorkflow, workflow.RegisterOptions{Name: task.MirrorWorkflowType})
	shared.RegisterWorkflowWithOptions(workflows.FleetCommandWorkflow, workflow.RegisterOptions{Name: task.FleetCommandWorkflowType})
	shared.RegisterWorkflowWithOptions(workflows.NotifyWorkflow, workflow.RegisterOptions{Name: task.NotifyWorkflowType})
	shared.RegisterWorkflowWithOptions(workflows.ModelAccessWorkflow, workflow.RegisterOptions{Name: task.AccessWorkflowType, VersioningBehavior: pinned.VersioningBehavior})
	shared.RegisterActivity(&activities.Mirror{Store: acts.Store, Upstream: up, Policy: acts.Policy, StagingDir: os.Getenv("AUTOGLM_MIRROR_STAGING_DIR")})

	cache, err := cacheFromEnv(acts, cacheDir)
	if err != nil {
		return nil, err
	}
	acts.Cached = func() []string {
		metas, _ := cache.Cached()
		var out []string
		for _, m := range metas {
			out = append(out, m.Name+"@"+m.Revision)
		}
		return out
	}
	recent := logging.NewRecent(2000)
	pollers.log.AddHook(recent)
	agent := &activities.NodeAgent{Node: acts.Node, Cache: cache, Policy: acts.Policy, Announce: acts.Announce, OnDrain: pollers.setDrained,
		Store: acts.Store, RecentLog: recent.Bytes}
	if m, ok := acts.LLM.(interface {
		Models(context.Context) ([]string, error)
	}); ok {
		agent.Health = m.Models
	}
	node.RegisterActivity(agent)
	return cache, nil
}

func cacheFromEnv(acts *activities.Activities, dir string) (*model.Cache, error) {
	c := &model.Cache{Dir: dir, Source: activities.StoreSource{Store: acts.Store}}
	if c.Dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("worker: no folder for the model cache (set AUTOGLM_CACHE_DIR): %w", err)
		}
		c.Dir = filepath.Join(base, "autoglm", acts.Node, "models")
	}
	if v := os.Getenv("AUTOGLM_CACHE_BUDGET"); v != "" {
		n, err := humanize.ParseBytes(v)
		if err != nil {
			return nil, fmt.Errorf("worker: AUTOGLM_CACHE_BUDGET=%q is not a size like 500GiB", v)
		}
		c.Budget = int64(n)
	}
	return c, nil
}

// labelsFromEnv reads AUTOGLM_LABELS, key=value pairs separated by commas
// (gpu=a100,region=eu), which fleet command selectors match.
func labelsFromEnv() []string {
	var out []string
	for _, l := range strings.Split(os.Getenv("AUTOGLM_LABELS"), ",") {
		if l = strings.TrimSpace(l); strings.Contains(l, "=") {
			out = append(out, l)
		}
	}
	return out
}

// modelPollers are the workers that poll the queues of the models this
// node serves (task.ModelQueue): its base models, and the fine-tuned
// models it has loaded (served), which come while it runs. Draining the
// node stops them, which makes its running pieces record a checkpoint
// and give their work back, so another node serving the model picks it
// up; undraining starts new ones.
type modelPollers struct {
	tc   client.Client
	opts sdkworker.Options
	acts *activities.Activities
	// served loads the fine-tuned models of the node's base models; nil on
	// a node that serves none.
	served *activities.ServedFineTuned
	log    *logrus.Logger
	// training polls each served model's training queue
	// (task.TrainingQueue) while the node has a training slot free; nil
	// on a node that trains nothing.
	training *trainingSlots
	mu       sync.Mutex
	// active are the running pollers by task queue.
	active map[string]sdkworker.Worker
	// stopped is a drained node: a fine-tuned model loaded meanwhile is
	// polled for from the undrain on.
	stopped bool
}

// trainingSlots are the node's training slots, shared by the pollers of
// all its models' training queues, so the node trains at most that many
// jobs whatever their models, apart from the batches it runs.
type trainingSlots struct {
	opts sdkworker.Options
}

// newTrainingSlots makes slots training slots; 0 is nil (no training).
// A training worker's stop waits for its trainer to save and its
// checkpoint to upload: stop timeout plus the upload's time.
func newTrainingSlots(base sdkworker.Options, slots int, stopTimeout time.Duration) (*trainingSlots, error) {
	if slots <= 0 {
		return nil, nil
	}
	acts, err := sdkworker.NewFixedSizeSlotSupplier(slots)
	if err != nil {
		return nil, err
	}
	one := func() sdkworker.SlotSupplier { s, _ := sdkworker.NewFixedSizeSlotSupplier(1); return s }
	tuner, err := sdkworker.NewCompositeTuner(sdkworker.CompositeTunerOptions{
		ActivitySlotSupplier: acts, WorkflowSlotSupplier: one(), LocalActivitySlotSupplier: one(),
		NexusSlotSupplier: one(), SessionActivitySlotSupplier: one(),
	})
	if err != nil {
		return nil, err
	}
	opts := base
	opts.Tuner = tuner
	opts.MaxConcurrentActivityExecutionSize = 0
	opts.MaxConcurrentActivityTaskPollers = 1
	opts.WorkerStopTimeout = stopTimeout + 5*time.Minute
	return &trainingSlots{opts: opts}, nil
}

func (p *modelPollers) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = false
	return p.startMissing()
}

// refresh starts polling for the fine-tuned models loaded since, unless
// the node is drained.
func (p *modelPollers) refresh() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	return p.startMissing()
}

// startMissing starts the pollers not running yet: the model and training
// queues of the base models, the model queues of the fine-tuned ones
// (nothing trains on those).
func (p *modelPollers) startMissing() error {
	if p.active == nil {
		p.active = map[string]sdkworker.Worker{}
	}
	all := func(w sdkworker.Worker) { w.RegisterActivity(p.acts) }
	for _, m := range p.acts.Models {
		if m == "*" {
			continue // a wildcard node is reached through its own queue
		}
		if err := p.poll(task.ModelQueue(m), p.opts, all); err != nil {
			return err
		}
		if p.training == nil {
			continue
		}
		if err := p.poll(task.TrainingQueue(m), p.training.opts, func(w sdkworker.Worker) {
			w.RegisterActivityWithOptions(p.acts.Train, activity.RegisterOptions{Name: "Train"})
		}); err != nil {
			return err
		}
	}
	if p.served != nil {
		for _, m := range p.served.Loaded() {
			if err := p.poll(task.ModelQueue(m), p.opts, all); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *modelPollers) poll(queue string, opts sdkworker.Options, register func(sdkworker.Worker)) error {
	if p.active[queue] != nil {
		return nil
	}
	w := sdkworker.New(p.tc, queue, opts)
	register(w)
	if err := w.Start(); err != nil {
		return fmt.Errorf("worker: polling %s: %w", queue, err)
	}
	p.active[queue] = w
	return nil
}

// stop stops polling; running pieces checkpoint and their work goes back
// to the model's queue, and running trainers save and their checkpoint
// is committed before their job goes back to the training queue. It
// returns once they have.
func (p *modelPollers) stop() {
	p.mu.Lock()
	ws := p.active
	p.active, p.stopped = nil, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.Stop() }()
	}
	wg.Wait()
}

// setDrained is what the drain and undrain fleet commands do to the
// process. Stopping waits for running pieces to checkpoint, so it runs
// on its own: the command answers at once.
func (p *modelPollers) setDrained(drained bool) {
	if drained {
		go func() {
			p.stop()
			p.log.Info("node drained: stopped polling the model and training queues; running pieces and training jobs moved on from their checkpoints")
		}()
		return
	}
	if err := p.start(); err != nil {
		p.log.WithError(err).Error("undrain")
	}
}
