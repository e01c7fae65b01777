package activities

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// drained is this worker's drain state, for its node record.
var drained atomic.Bool

// NodeAgent holds the activities a node runs on its own queue for fleet
// commands and its model cache: they act on this process and this disk.
type NodeAgent struct {
	Node  string
	Cache *model.Cache
	// Health checks the node's model server; nil skips it.
	Health func(ctx context.Context) ([]string, error)
	Policy *authz.Source
	// Announce rewrites the node record at once, so a drain is seen
	// before the next periodic write.
	Announce func(ctx context.Context) error
	// OnDrain tells the worker to stop or start taking work.
	OnDrain func(drained bool)
	// Store and RecentLog serve collect-logs: the node's last log lines
	// go to fleet/logs/<node>/ in the bucket.
	Store     storage.Store
	RecentLog func() []byte
}

// NodeCommandInput is one node's part of a fleet command.
type NodeCommandInput struct {
	Action string            `json:"action"`
	Args   map[string]string `json:"args,omitempty"`
}

// NodeCommandResult is what the node reports on success.
type NodeCommandResult struct {
	Node   string `json:"node"`
	Detail string `json:"detail"`
}

// RunNodeCommand runs one action of a fleet command on this node.
func (n *NodeAgent) RunNodeCommand(ctx context.Context, in NodeCommandInput) (NodeCommandResult, error) {
	detail, err := n.run(ctx, in)
	if err != nil {
		return NodeCommandResult{}, asApplicationError(err)
	}
	activity.GetLogger(ctx).Info("fleet command done", "action", in.Action, "node", n.Node)
	return NodeCommandResult{Node: n.Node, Detail: detail}, nil
}

func (n *NodeAgent) run(ctx context.Context, in NodeCommandInput) (string, error) {
	switch in.Action {
	case task.ActionHealth:
		return n.health(ctx)
	case task.ActionEnsureModel:
		name, rev, _ := strings.Cut(in.Args["model"], "@")
		e, err := n.ensure(ctx, name, rev)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s@%s cached (%d bytes): fetched %d, corrupted %d, evicted %v", name, rev, e.Bytes, len(e.Fetched), len(e.Corrupted), e.Evicted), nil
	case task.ActionDrain, task.ActionUndrain:
		drained.Store(in.Action == task.ActionDrain)
		if n.OnDrain != nil {
			n.OnDrain(in.Action == task.ActionDrain)
		}
		if n.Announce != nil {
			if err := n.Announce(ctx); err != nil {
				return "", err
			}
		}
		if in.Action == task.ActionDrain {
			return "drained: no new work", nil
		}
		return "taking work", nil
	case task.ActionCollectLogs:
		if n.Store == nil || n.RecentLog == nil {
			return "", task.Errorf(task.InvalidInput, "node %s keeps no log to collect", n.Node)
		}
		b := n.RecentLog()
		key := fmt.Sprintf("fleet/logs/%s/%s.log", n.Node, time.Now().UTC().Format("20060102T150405.000Z"))
		if _, err := n.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "text/plain"}); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d bytes of log in s3://%s/%s", len(b), n.Store.Bucket(), key), nil
	case task.ActionReloadPolicy:
		if n.Policy == nil {
			return "", task.Errorf(task.InvalidInput, "this node has no policy")
		}
		p, err := n.Policy.Current()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("policy in force: %d tenant(s)", len(p.Tenants)), nil
	}
	return "", task.Errorf(task.InvalidInput, "node %s cannot %s", n.Node, in.Action)
}

func (n *NodeAgent) health(ctx context.Context) (string, error) {
	var parts []string
	if n.Health != nil {
		models, err := n.Health(ctx)
		if err != nil {
			return "", task.Errorf(task.UpstreamUnavailable, "node %s: model server: %v", n.Node, err)
		}
		parts = append(parts, fmt.Sprintf("model server serves %s", strings.Join(models, ",")))
	}
	if n.Cache != nil {
		if err := os.MkdirAll(n.Cache.Dir, 0o755); err != nil {
			return "", err
		}
		f, err := os.CreateTemp(n.Cache.Dir, ".health-*")
		if err != nil {
			return "", fmt.Errorf("node %s: cache folder not writable: %w", n.Node, err)
		}
		f.Close()
		os.Remove(f.Name())
		parts = append(parts, "cache "+filepath.Clean(n.Cache.Dir)+" writable")
	}
	if drained.Load() {
		parts = append(parts, "drained")
	}
	return strings.Join(parts, "; "), nil
}

func (n *NodeAgent) ensure(ctx context.Context, name, rev string) (model.Ensured, error) {
	if n.Cache == nil {
		return model.Ensured{}, task.Errorf(task.InvalidInput, "node %s has no model cache", n.Node)
	}
	return n.Cache.Ensure(ctx, name, rev, func(done int64) { activity.RecordHeartbeat(ctx, done) })
}

// EnsureModel makes the node hold a verified copy of the model revision
// (see model.Cache.Ensure).
func (n *NodeAgent) EnsureModel(ctx context.Context, in EnsureModelInput) (model.Ensured, error) {
	res, err := n.ensure(ctx, in.Name, in.Revision)
	return res, asApplicationError(err)
}
