package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

func (c *cli) listCmd() *cobra.Command {
	var r taskclient.ListRequest
	var state, kind string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks of your tenants, newest first, filtered by state, model, submitter or kind",
		Example: `  autoglm list --as bob --state AWAITING_APPROVAL
  autoglm list --as carol --all-tenants --model glm-4-test --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var tasks []taskclient.Summary
			if api, err := c.remote(cmd); api != nil || err != nil {
				if err != nil {
					return err
				}
				// The server filters to the tenants the key's user has a
				// role in.
				tenant := ""
				if !all {
					tenant = tenantFlag(cmd, c.tenant)
				}
				r.State, r.Kind = task.State(strings.ToUpper(state)), task.Kind(kind)
				if tasks, err = api.List(cmd.Context(), tenant, r); err != nil {
					return err
				}
				return c.printTasks(tasks)
			}
			if err := c.requireUser(); err != nil {
				return err
			}
			tenants, err := c.tenantsOf(c.user)
			if err != nil {
				return err
			}
			if !all {
				if !slices.Contains(tenants, c.tenant) {
					return task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", c.user, c.tenant)
				}
				tenants = []string{c.tenant}
			}
			r.Tenants, r.State, r.Kind = tenants, task.State(strings.ToUpper(state)), task.Kind(kind)
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			tasks, err = tc.List(cmd.Context(), r)
			if err != nil {
				return err
			}
			return c.printTasks(tasks)
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "only tasks in this state, e.g. AWAITING_APPROVAL")
	f.StringVar(&r.Model, "model", "", "only tasks of this model")
	f.StringVar(&r.Submitter, "submitter", "", "only tasks of this submitter")
	f.StringVar(&kind, "kind", "", "only prompt or batch tasks")
	f.IntVar(&r.Limit, "limit", 50, "at most this many tasks")
	f.BoolVar(&all, "all-tenants", false, "every tenant you have a role in, not just --tenant")
	return cmd
}

func (c *cli) printTasks(tasks []taskclient.Summary) error {
	if c.json {
		return c.print(tasks, "")
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATE\tTENANT\tSUBMITTER\tMODEL\tKIND\tPRIORITY\tSTARTED")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.ID, t.State, t.Tenant, t.Submitter, t.Model, t.Kind, t.Priority, t.Started.Local().Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

// tenantsOf lists the tenants user has a role in, by the policy the
// workers use.
func (c *cli) tenantsOf(user string) ([]string, error) {
	p, err := currentPolicy()
	if err != nil {
		return nil, err
	}
	return p.TenantsOf(user), nil
}

func (c *cli) resubmitCmd() *cobra.Command {
	var failed bool
	cmd := &cobra.Command{
		Use:   "resubmit --failed TASK",
		Short: "Start a new task with only the items of TASK that failed at the model server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !failed {
				return fmt.Errorf("%w: only --failed is supported: say `autoglm resubmit --failed %s`", errUsage, args[0])
			}
			if api, err := c.remote(cmd); api != nil || err != nil {
				if err != nil {
					return err
				}
				res, err := api.ResubmitFailed(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return c.print(res, fmt.Sprintf("submitted task %s with the %d failed item(s) of %s (%d skipped: they would fail again unchanged)", res.Task.ID, res.Items, args[0], res.Skipped))
			}
			if err := c.requireUser(); err != nil {
				return err
			}
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			res, err := tc.ResubmitFailed(cmd.Context(), args[0], c.user)
			if err != nil {
				return err
			}
			return c.print(res, fmt.Sprintf("submitted task %s with the %d failed item(s) of %s (%d skipped: they would fail again unchanged)", res.Task.ID, res.Items, args[0], res.Skipped))
		},
	}
	cmd.Flags().BoolVar(&failed, "failed", false, "resubmit the failed items")
	return cmd
}
