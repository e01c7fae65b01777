package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

func (c *cli) listCmd() *cobra.Command {
	var r tclient.ListRequest
	var state, kind string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks of your tenants, newest first, filtered by state, model, submitter or kind",
		Long: `list shows the tasks of every tenant you have a role in, or of --tenant
(AUTOGLM_TENANT) when given.`,
		Example: `  autoglm list --state AWAITING_APPROVAL
  autoglm list --tenant demo --model glm-4-test --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			if !all {
				r.Tenant = tenantFlag(cmd, c.tenant)
			}
			r.State, r.Kind = task.State(strings.ToUpper(state)), task.Kind(kind)
			tasks, err := cl.List(cmd.Context(), r)
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
	f.BoolVar(&all, "all-tenants", false, "every tenant you have a role in, even with --tenant set")
	return cmd
}

func (c *cli) printTasks(tasks []taskclient.Summary) error {
	if c.json {
		if tasks == nil {
			tasks = []taskclient.Summary{}
		}
		return c.print(tasks, "")
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATE\tTENANT\tSUBMITTER\tMODEL\tKIND\tPRIORITY\tSTARTED")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.ID, t.State, t.Tenant, t.Submitter, t.Model, t.Kind, t.Priority, t.Started.Local().Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

func (c *cli) resubmitCmd() *cobra.Command {
	var failed, unanswered bool
	cmd := &cobra.Command{
		Use:   "resubmit (--failed | --unanswered) TASK",
		Short: "Start a new task with the items of TASK that failed, or that it never answered",
		Long: `resubmit starts a new task, in TASK's tenant and model, with some of TASK's
items, unchanged from its input:

  --failed      the items that failed at the model server (items that would
                fail again unchanged, such as malformed lines, are skipped)
  --unanswered  the items a cancelled or expired TASK never answered

The new task names TASK as its origin, in its status and its report.`,
		Example: `  autoglm resubmit --failed 20260520-101500-ab12cd34
  autoglm resubmit --unanswered 20260520-101500-ab12cd34 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var which taskclient.Items
			switch {
			case failed == unanswered:
				return fmt.Errorf("%w: say which items: `autoglm resubmit --failed %s` or `--unanswered %s`", errUsage, args[0], args[0])
			case failed:
				which = taskclient.ItemsFailed
			default:
				which = taskclient.ItemsUnanswered
			}
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			res, err := cl.Resubmit(cmd.Context(), args[0], which)
			if err != nil {
				return err
			}
			text := fmt.Sprintf("submitted task %s with the %d %s item(s) of %s", res.Task.ID, res.Items, which, args[0])
			if which == taskclient.ItemsFailed {
				text += fmt.Sprintf(" (%d skipped: they would fail again unchanged)", res.Skipped)
			}
			return c.print(res, text)
		},
	}
	cmd.Flags().BoolVar(&failed, "failed", false, "resubmit the items that failed at the model server")
	cmd.Flags().BoolVar(&unanswered, "unanswered", false, "resubmit the items a cancelled or expired task never answered")
	return cmd
}
