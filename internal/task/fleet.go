package task

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// FleetCommandWorkflowType is the registered name of the workflow that runs
// one command on many nodes.
const FleetCommandWorkflowType = "FleetCommandWorkflow"

// The actions a fleet command runs on each node.
const (
	ActionHealth       = "health"        // the node's model server answers, its cache folder is writable
	ActionEnsureModel  = "ensure-model"  // bring a mirrored model into the node's cache (arg model=name@revision)
	ActionDrain        = "drain"         // take no new work
	ActionUndrain      = "undrain"       // take work again
	ActionCollectLogs  = "collect-logs"  // upload the node's last 2,000 log lines to fleet/logs/<node>/
	ActionReloadPolicy = "reload-policy" // re-read the tenant policy file now
)

// FleetActions lists the actions, as `--help` shows them.
var FleetActions = []string{ActionHealth, ActionEnsureModel, ActionDrain, ActionUndrain, ActionCollectLogs, ActionReloadPolicy}

// Defaults of a fleet command.
const (
	DefaultFleetConcurrency = 8
	DefaultNodeTimeout      = 2 * time.Minute
)

// Selector picks nodes by label: key=value pairs that must all match.
// The keys node and model match a node's name and the models it serves.
type Selector map[string]string

// ParseSelector reads "k=v,k2=v2" (or several such flags joined).
func ParseSelector(specs ...string) (Selector, error) {
	s := Selector{}
	for _, spec := range specs {
		for _, kv := range strings.Split(spec, ",") {
			if kv = strings.TrimSpace(kv); kv == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || v == "" {
				return nil, Errorf(InvalidInput, "selector %q is not key=value", kv)
			}
			s[k] = v
		}
	}
	return s, nil
}

// String is the selector as k=v pairs in key order.
func (s Selector) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+s[k])
	}
	return strings.Join(parts, ",")
}

// FleetCommand starts a FleetCommandWorkflow.
type FleetCommand struct {
	// ID names the command; its workflow is fleet-<id>.
	ID       string            `json:"id"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	Selector Selector          `json:"selector,omitempty"`
	Args     map[string]string `json:"args,omitempty"`
	// Concurrency bounds the nodes working on the command at once.
	Concurrency int `json:"concurrency,omitempty"`
	// NodeTimeout bounds one node's part, from when it is sent.
	NodeTimeout time.Duration `json:"node_timeout,omitempty"`
}

// FleetWorkflowID is the workflow ID of a fleet command.
func FleetWorkflowID(id string) string { return "fleet-" + id }

// Validate checks the command before a workflow starts.
func (c FleetCommand) Validate() error {
	known := false
	for _, a := range FleetActions {
		known = known || a == c.Action
	}
	switch {
	case c.ID == "" || len(c.ID) > MaxIDLength || strings.ContainsAny(c.ID, "/\\ \t\r\n"):
		return Errorf(InvalidInput, "fleet command id %q is not a valid id", c.ID)
	case c.Actor == "":
		return Errorf(InvalidInput, "a fleet command needs its actor")
	case !known:
		return Errorf(InvalidInput, "unknown action %q (one of %s)", c.Action, strings.Join(FleetActions, ", "))
	case c.Action == ActionEnsureModel && !strings.Contains(c.Args["model"], "@"):
		return Errorf(InvalidInput, "ensure-model needs --arg model=NAME@REVISION")
	case c.Concurrency < 0 || c.NodeTimeout < 0:
		return Errorf(InvalidInput, "concurrency and node timeout must not be negative")
	}
	return nil
}

// Outcomes of one node's part of a fleet command.
const (
	NodeOK       = "ok"
	NodeFailed   = "failed"
	NodeTimedOut = "timed_out"
)

// NodeOutcome is one node's part of a fleet command.
type NodeOutcome struct {
	Node   string `json:"node"`
	Status string `json:"status"`
	// Detail is what the node reported when it succeeded.
	Detail string `json:"detail,omitempty"`
	// Reason says why it failed or timed out.
	Reason string `json:"reason,omitempty"`
}

// FleetResult is what a fleet command did, node by node. Partial is set
// when some nodes succeeded and some did not.
type FleetResult struct {
	ID       string        `json:"id"`
	Actor    string        `json:"actor"`
	Action   string        `json:"action"`
	Selector string        `json:"selector"`
	Nodes    []NodeOutcome `json:"nodes"`
	OK       int           `json:"ok"`
	Failed   int           `json:"failed"`
	TimedOut int           `json:"timed_out"`
	Partial  bool          `json:"partial"`
	// Audit is the record of who ran what, in the bucket.
	Audit ObjectRef `json:"audit"`
}

// Summary is one line for people.
func (r FleetResult) Summary() string {
	return fmt.Sprintf("%s on %d node(s): %d ok, %d failed, %d timed out", r.Action, len(r.Nodes), r.OK, r.Failed, r.TimedOut)
}
