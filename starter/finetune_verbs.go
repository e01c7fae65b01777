package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

func (c *cli) finetuneWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch TASK",
		Short: "Follow a fine-tuning task until it ends: each transition, and step, epoch, loss and ETA while it trains",
		Long: `watch prints each transition of the task's audit trail and, while it trains,
a progress bar with the step, the epoch out of the epochs it runs, the loss,
steps per second and an ETA on a terminal (a progress line every few seconds
otherwise). It exits as autoglm watch does: 0 when the task completes (the
model is published), the code of its failure's type when it failed, 6 when it
was rejected, cancelled or expired. Ctrl-C leaves quietly (130); training goes on.`,
		Example: `  autoglm finetune watch 7f3a…
  autoglm finetune watch 7f3a… --json   # nothing while it runs, then the final status`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			st, err := c.follow(cmd.Context(), cl, args[0])
			if err != nil {
				return err
			}
			if err := c.print(st, formatFineTune(st)); err != nil {
				return err
			}
			return ending(st)
		},
	}
}

func (c *cli) finetuneListCmd() *cobra.Command {
	var r tclient.ListRequest
	var state string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the fine-tuning tasks of your tenants, newest first",
		Example: `  autoglm finetune list
  autoglm finetune list --state RUNNING --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			r.Tenant = tenantFlag(cmd, c.tenant)
			r.State, r.Kind = task.State(strings.ToUpper(state)), task.KindFineTune
			tasks, err := cl.List(cmd.Context(), r)
			if err != nil {
				return err
			}
			return c.printTasks(tasks)
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "only tasks in this state, e.g. RUNNING")
	f.StringVar(&r.Model, "model", "", "only tasks of this base model")
	f.StringVar(&r.Submitter, "submitter", "", "only tasks of this submitter")
	f.IntVar(&r.Limit, "limit", 50, "at most this many tasks")
	return cmd
}

func (c *cli) finetuneEventsCmd() *cobra.Command {
	var metricsOnly bool
	cmd := &cobra.Command{
		Use:   "events TASK",
		Short: "Show a fine-tuning task's events: its transitions, and its loss curve (step, epoch, training loss)",
		Long: `events lists, oldest first, the task's transitions (type message) and one
metrics event per step the trainer logged a loss at, read from the committed
checkpoints: the loss curve, which --metrics --json gives as points to plot.`,
		Example: `  autoglm finetune events 7f3a…
  autoglm finetune events 7f3a… --metrics --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			evs, err := cl.FineTuneEvents(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := []taskclient.FineTuneEvent{}
			for _, e := range evs {
				if !metricsOnly || e.Type == taskclient.FineTuneMetrics {
					out = append(out, e)
				}
			}
			if c.json {
				return c.print(out, "")
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tTYPE\tLEVEL\tMESSAGE")
			for _, e := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Type, e.Level, e.Message)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&metricsOnly, "metrics", false, "only the loss curve")
	return cmd
}

func (c *cli) finetuneCheckpointsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoints TASK",
		Short: "Show a fine-tuning task's committed checkpoints: step, epoch, loss, and whether their files are kept",
		Long: `checkpoints lists every checkpoint committed for the task, oldest first, and
its final model. The newest max_keep checkpoints keep their files in the
bucket (kept); a resumed attempt starts from the newest.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			cps, err := cl.FineTuneCheckpoints(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if c.json {
				return c.print(cps, "")
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tSTEP\tEPOCH\tLOSS\tKEPT\tFINAL\tCOMMITTED")
			for _, cp := range cps {
				fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.4f\t%t\t%t\t%s\n", cp.Seq, cp.Step, cp.Epoch, cp.Loss, cp.Kept, cp.Final, cp.Time.Local().Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		},
	}
}

// finetuneDecideCmd is pause, resume or cancel of a fine-tuning task:
// the task's update of that name, refused for a task of another kind.
func (c *cli) finetuneDecideCmd(action, short string) *cobra.Command {
	return c.decisionCmd(action, short, "fine-tuning task", "why, for the audit trail",
		func(ctx context.Context, cl tclient.Client, id string, d tclient.Decision) (tclient.Status, error) {
			return cl.DecideFineTune(ctx, id, action, d)
		})
}

// training shows a fine-tuning task's step, epoch and loss: a bar over
// its epochs on a terminal, a line now and then otherwise. The rate is
// the steps this watch saw go by.
func (r *renderer) training(ft task.FineTuneStatus) {
	now := r.now()
	rate := r.rateAt(ft.Step, now)
	epochs := 0
	if h := ft.Hyperparameters; h != nil {
		epochs = h.NEpochs
	}
	eta := "ETA unknown"
	if rate > 0 && ft.Epoch > 0 && epochs > 0 {
		total := float64(ft.Step) / ft.Epoch * float64(epochs)
		eta = etaOf(total-float64(ft.Step), rate)
	}
	desc := fmt.Sprintf("step %d, epoch %.2f of %d, loss %.4f, %.1f steps/s, %s", ft.Step, ft.Epoch, epochs, ft.Loss, rate, eta)
	if !r.bar {
		if now.Sub(r.lastPlain) >= plainEvery {
			fmt.Fprintf(r.out, "          training: %s\n", desc)
			r.lastPlain = now
		}
		return
	}
	const width = 1000 // the bar's units: thousandths of the run
	if r.pb == nil {
		r.pb = r.newBar(width)
	}
	r.pb.Describe(desc)
	if epochs > 0 {
		_ = r.pb.Set(min(width, int(ft.Epoch/float64(epochs)*width)))
	}
}
