package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"go.temporal.io/sdk/client"

	"github.com/dustin/go-humanize"
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
// node stops them, which makes its running batches record a checkpoint
// and give their work back, so another node serving the model picks it
// up; undraining starts new ones.
type modelPollers struct {
	tc     client.Client
	opts   sdkworker.Options
	acts   *activities.Activities
	served *activities.ServedFineTuned // nil: the node serves no fine-tuned model
	log    *logrus.Logger
	mu     sync.Mutex
	active map[string]sdkworker.Worker
	// stopped is a drained node: a fine-tuned model loaded meanwhile is
	// polled for from the undrain on.
	stopped bool
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

func (p *modelPollers) startMissing() error {
	models := p.acts.Models
	if p.served != nil {
		models = append(slices.Clip(models), p.served.Loaded()...)
	}
	if p.active == nil {
		p.active = map[string]sdkworker.Worker{}
	}
	for _, m := range models {
		if m == "*" || p.active[m] != nil {
			continue // a wildcard node is reached through its own queue
		}
		w := sdkworker.New(p.tc, task.ModelQueue(m), p.opts)
		w.RegisterActivity(p.acts)
		if err := w.Start(); err != nil {
			return fmt.Errorf("worker: polling %s: %w", task.ModelQueue(m), err)
		}
		p.active[m] = w
	}
	return nil
}

// stop stops polling; running batches checkpoint and their work goes back
// to the model's queue. It returns once they have.
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
// process. Stopping waits for running batches to checkpoint, so it runs
// on its own: the command answers at once.
func (p *modelPollers) setDrained(drained bool) {
	if drained {
		go func() {
			p.stop()
			p.log.Info("node drained: stopped polling the model queues; running batches moved on from their checkpoints")
		}()
		return
	}
	if err := p.start(); err != nil {
		p.log.WithError(err).Error("undrain")
	}
}
