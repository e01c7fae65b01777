package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func (c *cli) watchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch TASK",
		Short: "Follow a task until it ends: each transition, and a progress bar while it runs",
		Long: `watch prints each transition of the task's audit trail as it happens and a
progress bar with rate and ETA while inference runs. It exits 0 when the task
completes and 6 when it ends otherwise (rejected, failed, cancelled, expired).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if api, err := c.remote(cmd); api != nil || err != nil {
				if err != nil {
					return err
				}
				return c.remoteWatch(cmd.Context(), api, args[0])
			}
			return c.watch(cmd.Context(), args[0])
		},
	}
}

func (c *cli) watch(ctx context.Context, id string) error {
	tc, err := c.client(ctx)
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	seen := 0
	var lastLine time.Time
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := tc.Status(ctx, id)
		if err != nil {
			return err
		}
		if !c.json {
			for _, t := range st.Audit[seen:] {
				if bar != nil {
					bar.Finish()
					fmt.Fprintln(os.Stderr)
					bar = nil
				}
				fmt.Fprintf(c.out, "%s  %-17s %-10s %s\n", t.Time.Local().Format("15:04:05"), t.To, t.Actor, t.Reason)
			}
			seen = len(st.Audit)
			if st.State == task.Running && st.Progress.Total > 0 {
				if bar == nil && !term.IsTerminal(int(os.Stderr.Fd())) {
					// No terminal to redraw a bar on: a line now and then.
					if time.Since(lastLine) >= 5*time.Second {
						fmt.Fprintf(c.out, "          progress: %d of %d (%d failed, %.0f/s)\n", st.Progress.Done(), st.Progress.Total, st.Progress.Failed, st.Progress.RatePerSecond)
						lastLine = time.Now()
					}
				} else if bar == nil {
					bar = progressbar.NewOptions(st.Progress.Total,
						progressbar.OptionSetWriter(os.Stderr),
						progressbar.OptionSetDescription("inference"),
						progressbar.OptionShowCount(),
						progressbar.OptionShowIts(),
						progressbar.OptionSetItsString("req"),
						progressbar.OptionSetPredictTime(true),
						progressbar.OptionThrottle(200*time.Millisecond))
				}
				if bar != nil {
					_ = bar.Set(st.Progress.Done())
				}
			}
		}
		if st.State.Final() {
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
			if err := c.print(st, formatStatus(st)); err != nil {
				return err
			}
			if st.State != task.Completed {
				// The failure's own type decides the exit code: a task
				// refused by authorization exits 3, like any refusal.
				if ferr := tc.Failure(ctx, id); ferr != nil {
					return fmt.Errorf("%w: task %s is %s: %w", errNotCompleted, st.ID, st.State, ferr)
				}
				return fmt.Errorf("%w: task %s is %s", errNotCompleted, st.ID, st.State)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// formatStatus is the text form of a status.
func formatStatus(st task.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "task %s: %s (stage %s)\n", st.ID, st.State, st.Stage)
	prio := "3 (default)"
	if st.Priority > 0 {
		prio = strconv.Itoa(st.Priority)
	}
	fmt.Fprintf(&b, "  tenant %s, submitter %s, model %s, %s, priority %s\n", st.Tenant, st.Submitter, st.Model, st.Kind, prio)
	p := st.Progress
	fmt.Fprintf(&b, "  requests: %d total, %d completed, %d failed", p.Total, p.Completed, p.Failed)
	if p.RatePerSecond > 0 && !st.State.Final() {
		fmt.Fprintf(&b, " (%.1f/s, about %s left)", p.RatePerSecond, (time.Duration(p.ETASeconds) * time.Second).String())
	}
	b.WriteString("\n")
	if !p.WaitingSince.IsZero() && !st.State.Final() {
		fmt.Fprintf(&b, "  waiting for the model server since %s\n", p.WaitingSince.Format(time.RFC3339))
	}
	if !p.StoreWaitingSince.IsZero() && !st.State.Final() {
		fmt.Fprintf(&b, "  waiting for the bucket since %s\n", p.StoreWaitingSince.Format(time.RFC3339))
	}
	if st.Node != "" {
		fmt.Fprintf(&b, "  node %s\n", st.Node)
	}
	if len(st.Approvals) > 0 || st.Quorum > 1 {
		var names []string
		for _, d := range st.Approvals {
			names = append(names, d.Actor)
		}
		fmt.Fprintf(&b, "  approvals %d of %d: %s\n", len(st.Approvals), st.Quorum, strings.Join(names, ", "))
	}
	if st.LastError != "" {
		fmt.Fprintf(&b, "  last error: %s\n", st.LastError)
	}
	for _, a := range st.Artifacts {
		fmt.Fprintf(&b, "  %-8s %s (%d bytes)\n", a.Category, a.URI(), a.Size)
	}
	b.WriteString("  audit:\n")
	for _, t := range st.Audit {
		fmt.Fprintf(&b, "    %s  %-17s %-10s %s\n", t.Time.Format(time.RFC3339), t.To, t.Actor, t.Reason)
	}
	return strings.TrimRight(b.String(), "\n")
}
