package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/usage"
)

func (c *cli) usageCmd() *cobra.Command {
	var since, until string
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show the tokens your tenants' tasks used, per day, tenant and model",
		Long: `usage sums the tokens (prompt, completion, total) of the tasks that ended on
each day (UTC), as the model server reported them in each answer's usage, per
tenant and model. It covers every tenant you have a role in, or --tenant; the
last 30 days unless --since (and --until) say otherwise.`,
		Example: `  autoglm usage
  autoglm usage --tenant demo --since 2026-12-01 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := tclient.UsageRequest{Tenant: tenantFlag(cmd, c.tenant)}
			var err error
			if r.Since, err = parseDay("--since", since); err != nil {
				return err
			}
			if r.Until, err = parseDay("--until", until); err != nil {
				return err
			}
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			rows, err := cl.Usage(cmd.Context(), r)
			if err != nil {
				return err
			}
			if rows == nil {
				rows = []usage.Row{}
			}
			if c.json {
				return c.print(rows, "")
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "DAY\tTENANT\tMODEL\tTASKS\tPROMPT\tCOMPLETION\tTOTAL\t")
			for _, row := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n", row.Day, row.Tenant, row.Model, row.Tasks, row.PromptTokens, row.CompletionTokens, row.TotalTokens)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "the first day, YYYY-MM-DD (default: 29 days before --until)")
	cmd.Flags().StringVar(&until, "until", "", "the last day, YYYY-MM-DD (default: today, UTC)")
	return cmd
}

func parseDay(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	d, err := time.Parse(usage.DayLayout, v)
	if err != nil {
		return d, task.Errorf(task.InvalidInput, "%s %q is not a day as YYYY-MM-DD", flag, v)
	}
	return d, nil
}
