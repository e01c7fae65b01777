package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/fleetclient"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// fleet connects the fleet verbs' library.
func (c *cli) fleet(cmd *cobra.Command) (*fleetclient.Client, error) {
	if err := c.requireUser(); err != nil {
		return nil, err
	}
	tc, err := c.client(cmd.Context())
	if err != nil {
		return nil, err
	}
	p, err := currentPolicy()
	if err != nil {
		return nil, err
	}
	// The break-glass key (AUTOGLM_ASSERTION_PRIVATE_KEY) vouches for
	// access decisions as it does for task updates.
	return &fleetclient.Client{Temporal: tc.Temporal, Store: tc.Store, Policy: authz.Static(p), Signer: tc.Signer}, nil
}

// fleetOps is what the fleet and model verbs call: the API server's
// client when one is configured (you are who your key says), else the
// library on Temporal and the bucket as --as (the operators' break-glass
// path, AUTOGLM_SERVER=direct).
type fleetOps interface {
	Nodes(ctx context.Context) ([]fleetclient.NodeView, error)
	Drain(ctx context.Context, node string, on bool) (task.FleetResult, error)
	Exec(ctx context.Context, cmd task.FleetCommand) (task.FleetResult, error)
	Mirror(ctx context.Context, in task.MirrorInput) (task.MirrorResult, error)
	RequestAccess(ctx context.Context, req task.AccessRequest) (task.AccessRequest, error)
	AccessStatus(ctx context.Context, id string) (task.AccessStatus, error)
	DecideAccess(ctx context.Context, id string, approve bool, reason string) (task.AccessStatus, error)
}

// directFleet is fleetclient acting as one user; tenant is the default
// tenant of an access request.
type directFleet struct {
	fc     *fleetclient.Client
	user   string
	tenant string
}

func (d directFleet) Nodes(ctx context.Context) ([]fleetclient.NodeView, error) {
	return d.fc.Nodes(ctx, d.user, envOr("TEMPORAL_NAMESPACE", "default"))
}
func (d directFleet) Drain(ctx context.Context, node string, on bool) (task.FleetResult, error) {
	return d.fc.Drain(ctx, d.user, node, on)
}
func (d directFleet) Exec(ctx context.Context, cmd task.FleetCommand) (task.FleetResult, error) {
	return d.fc.Exec(ctx, d.user, cmd)
}
func (d directFleet) Mirror(ctx context.Context, in task.MirrorInput) (task.MirrorResult, error) {
	return d.fc.Mirror(ctx, d.user, in)
}
func (d directFleet) RequestAccess(ctx context.Context, req task.AccessRequest) (task.AccessRequest, error) {
	if req.Tenant == "" {
		req.Tenant = d.tenant
	}
	return d.fc.RequestAccess(ctx, d.user, req)
}
func (d directFleet) AccessStatus(ctx context.Context, id string) (task.AccessStatus, error) {
	return d.fc.AccessStatus(ctx, d.user, id)
}
func (d directFleet) DecideAccess(ctx context.Context, id string, approve bool, reason string) (task.AccessStatus, error) {
	return d.fc.DecideAccess(ctx, d.user, id, approve, reason)
}

// ops is the fleet verbs' client: through the server when one is
// configured, else direct.
func (c *cli) ops(cmd *cobra.Command) (fleetOps, error) {
	api, err := c.remote(cmd)
	if err != nil {
		return nil, err
	}
	if api != nil {
		return api, nil
	}
	fc, err := c.fleet(cmd)
	if err != nil {
		return nil, err
	}
	return directFleet{fc: fc, user: c.user, tenant: c.tenant}, nil
}

func (c *cli) fleetCmd() *cobra.Command {
	fleet := &cobra.Command{Use: "fleet", Short: "Run commands on many nodes at once (operators)"}
	var selectors, args []string
	var concurrency int
	var timeout time.Duration
	exec := &cobra.Command{
		Use:   "exec --selector KEY=VALUE ACTION",
		Short: "Run ACTION on every live node the selector picks: " + strings.Join(task.FleetActions, ", "),
		Long: `Runs ACTION on every live node whose labels match the selector (all pairs;
the keys node and model match a node's name and the models it serves; no
selector is every node), at most --concurrency nodes at once, each within
--timeout. Prints each node as ok, failed or timed out, with the reason.
Exits 0 when every node succeeded, 6 when some did not, 4 when the
selector matches no live node (then nothing ran).

  autoglm fleet exec --selector gpu=a100 health
  autoglm fleet exec --selector region=eu --arg model=glm-4-9b@main ensure-model
  autoglm fleet exec --selector node=gpu3 drain`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, pos []string) error {
			sel, err := task.ParseSelector(selectors...)
			if err != nil {
				return err
			}
			kv, err := task.ParseSelector(args...)
			if err != nil {
				return err
			}
			ops, err := c.ops(cmd)
			if err != nil {
				return err
			}
			stop := waiting(fmt.Sprintf("%s on the nodes of selector %q", pos[0], sel.String()))
			res, err := ops.Exec(cmd.Context(), task.FleetCommand{
				Action: pos[0], Selector: sel, Args: kv, Concurrency: concurrency, NodeTimeout: timeout,
			})
			stop()
			if err != nil {
				return c.reach(err)
			}
			if len(res.Nodes) == 0 {
				// Nothing ran: a script must not take that for success.
				if c.json {
					_ = c.print(res, "")
				}
				return task.Errorf(task.NotFound, "the selector %q matches no live node: nothing ran (see `autoglm nodes` for the nodes and their labels)", sel.String())
			}
			if err := c.print(res, fleetText(res)); err != nil {
				return err
			}
			if res.OK < len(res.Nodes) {
				return fmt.Errorf("%w: %s", errNotCompleted, res.Summary())
			}
			return nil
		},
	}
	f := exec.Flags()
	f.StringSliceVar(&selectors, "selector", nil, "KEY=VALUE labels a node must have (repeatable, or comma-separated)")
	f.StringSliceVar(&args, "arg", nil, "KEY=VALUE arguments of the action, e.g. model=NAME@REVISION for ensure-model")
	f.IntVar(&concurrency, "concurrency", task.DefaultFleetConcurrency, "nodes working on it at once")
	f.DurationVar(&timeout, "timeout", task.DefaultNodeTimeout, "how long one node may take, from when it is sent")
	fleet.AddCommand(exec)
	return fleet
}

func fleetText(res task.FleetResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (by %s, selector %q, audit %s)\n", res.Summary(), res.Actor, res.Selector, res.Audit.URI())
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tDETAIL")
	for _, n := range res.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Node, n.Status, n.Detail+n.Reason)
	}
	tw.Flush()
	return strings.TrimRight(b.String(), "\n")
}
