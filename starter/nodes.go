package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/autoglm-flow/autoglm-flow/internal/fleetclient"
)

func (c *cli) nodesCmd() *cobra.Command {
	nodes := &cobra.Command{
		Use:   "nodes",
		Short: "List the fleet's nodes: models, labels, capacity, running pieces, cache, last seen, drained (operators)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ops, err := c.ops(cmd)
			if err != nil {
				return err
			}
			views, err := ops.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			return c.print(views, nodesText(views))
		},
	}
	drain := func(use string, on bool, short string) *cobra.Command {
		return &cobra.Command{
			Use: use + " NODE", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ops, err := c.ops(cmd)
				if err != nil {
					return err
				}
				res, err := ops.Drain(cmd.Context(), args[0], on)
				if err != nil {
					return err
				}
				if len(res.Nodes) == 0 {
					return fmt.Errorf("%w: no live node %s", errNotCompleted, args[0])
				}
				if err := c.print(res, fleetText(res)); err != nil {
					return err
				}
				if res.OK != len(res.Nodes) {
					return fmt.Errorf("%w: %s", errNotCompleted, res.Summary())
				}
				return nil
			},
		}
	}
	nodes.AddCommand(
		drain("drain", true, "Stop a node taking new work; its running pieces checkpoint and move to another node"),
		drain("undrain", false, "Let a drained node take work again"),
	)
	return nodes
}

func nodesText(views []fleetclient.NodeView) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tALIVE\tDRAINED\tMODELS\tLABELS\tRUNNING\tCAPACITY\tCACHED\tLAST SEEN")
	for _, v := range views {
		seen := "never"
		if !v.LastSeen.IsZero() {
			seen = time.Since(v.LastSeen).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%v\t%v\t%s\t%s\t%d\t%d\t%s\t%s\n", v.Name, v.Alive, v.Drained, strings.Join(v.Models, ","),
			strings.Join(v.Labels, ","), v.Running, v.Capacity, strings.Join(v.Cached, ","), seen)
	}
	tw.Flush()
	if len(views) == 0 {
		fmt.Fprintln(os.Stderr, "no nodes have announced themselves")
	}
	return strings.TrimRight(b.String(), "\n")
}
