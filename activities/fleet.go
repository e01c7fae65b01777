package activities

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// fleetAuditPrefix is where each fleet command's record of who ran what
// is kept.
const fleetAuditPrefix = "audit/fleet/"

// SelectNodesResult are the live nodes a selector picks, by name.
type SelectNodesResult struct {
	Nodes []string `json:"nodes"`
}

// SelectNodes lists the live nodes whose labels match every pair of the
// selector (the keys node and model match the name and the models served).
func (a *Activities) SelectNodes(ctx context.Context, sel task.Selector) (SelectNodesResult, error) {
	nodes, err := a.LiveNodes(ctx)
	if err != nil {
		return SelectNodesResult{}, err
	}
	var res SelectNodesResult
	now := time.Now()
	for _, n := range nodes {
		if n.Alive(now) && n.Matches(sel) {
			res.Nodes = append(res.Nodes, n.Name)
		}
	}
	return res, nil
}

// Matches tells whether the node has every label of the selector.
func (n Node) Matches(sel task.Selector) bool {
	for k, v := range sel {
		var ok bool
		switch k {
		case "node":
			ok = n.Name == v
		case "model":
			ok = slices.Contains(n.Models, v)
		default:
			ok = slices.Contains(n.Labels, k+"="+v)
		}
		if !ok {
			return false
		}
	}
	return true
}

// LabelMap is the node's labels as key → value.
func (n Node) LabelMap() map[string]string {
	m := map[string]string{}
	for _, l := range n.Labels {
		k, v, _ := strings.Cut(l, "=")
		m[k] = v
	}
	return m
}

// RecordFleetAudit keeps a fleet command's result (who ran what, where,
// with what outcome) in the bucket beside the workflow's own history.
func (a *Activities) RecordFleetAudit(ctx context.Context, res task.FleetResult) (task.ObjectRef, error) {
	ref, err := a.putJSON(ctx, fleetAuditPrefix+res.ID+".json", storage.Data, res)
	return ref, asApplicationError(err)
}
