package main

import (
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
	return &fleetclient.Client{Temporal: tc.Temporal, Store: tc.Store, Policy: authz.Static(p)}, nil
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
Exits 0 when every node succeeded, 6 when some did not.

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
			fc, err := c.fleet(cmd)
			if err != nil {
				return err
			}
			res, err := fc.Exec(cmd.Context(), c.user, task.FleetCommand{
				Action: pos[0], Selector: sel, Args: kv, Concurrency: concurrency, NodeTimeout: timeout,
			})
			if err != nil {
				return err
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
