package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

func (c *cli) scheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Manage the Temporal Schedule that archives old task logs (LogArchiveWorkflow)",
	}
	cmd.AddCommand(c.scheduleInstallCmd(), c.scheduleShowCmd(), c.scheduleTriggerCmd(), c.scheduleDeleteCmd())
	return cmd
}

func (c *cli) scheduleInstallCmd() *cobra.Command {
	var s taskclient.LogArchiveSchedule
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Create the log archive schedule, or update it if it exists",
		Long: `install creates the Temporal Schedule ` + task.LogArchiveScheduleID + `, which starts
LogArchiveWorkflow every --every: it packs the task logs older than --older-than
into the archive category (one .tar.gz per task and day) and removes the
originals. A worker started with AUTOGLM_LOG_ARCHIVE_EVERY set installs it too.`,
		Example: `  autoglm schedule install
  autoglm schedule install --every 6h --older-than 72h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			created, err := taskclient.InstallLogArchiveSchedule(cmd.Context(), tc.Temporal, s)
			if err != nil {
				return err
			}
			verb := "updated"
			if created {
				verb = "created"
			}
			info, err := taskclient.DescribeLogArchiveSchedule(cmd.Context(), tc.Temporal)
			if err != nil {
				return err
			}
			return c.print(info, fmt.Sprintf("%s schedule %s\n%s", verb, task.LogArchiveScheduleID, formatSchedule(info)))
		},
	}
	cmd.Flags().DurationVar(&s.Every, "every", taskclient.DefaultLogArchiveEvery, "time between runs")
	cmd.Flags().DurationVar(&s.OlderThan, "older-than", task.DefaultLogArchiveAge, "archive logs older than this")
	return cmd
}

func (c *cli) scheduleShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the log archive schedule: its timing and next and recent runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			info, err := taskclient.DescribeLogArchiveSchedule(cmd.Context(), tc.Temporal)
			if err != nil {
				return err
			}
			return c.print(info, formatSchedule(info))
		},
	}
}

func (c *cli) scheduleTriggerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "trigger",
		Short: "Run the log archive now (skipped if a run is going on)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			if err := taskclient.TriggerLogArchive(cmd.Context(), tc.Temporal); err != nil {
				return err
			}
			return c.print(map[string]string{"triggered": task.LogArchiveScheduleID}, "triggered "+task.LogArchiveScheduleID+"; its runs are the workflows "+task.LogArchiveWorkflowID+"-*")
		},
	}
}

func (c *cli) scheduleDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete",
		Short: "Delete the log archive schedule (a run going on finishes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			if err := taskclient.DeleteLogArchiveSchedule(cmd.Context(), tc.Temporal); err != nil {
				return err
			}
			return c.print(map[string]string{"deleted": task.LogArchiveScheduleID}, "deleted "+task.LogArchiveScheduleID)
		},
	}
}

func formatSchedule(info taskclient.LogArchiveScheduleInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "every %s, archiving task logs older than %s", info.Every, info.OlderThan)
	if info.Paused {
		b.WriteString(" (paused)")
	}
	for _, t := range info.NextRuns[:min(len(info.NextRuns), 3)] {
		fmt.Fprintf(&b, "\n  next run: %s", t.Local().Format(time.RFC3339))
	}
	for _, t := range info.RecentRuns {
		fmt.Fprintf(&b, "\n  ran at:   %s", t.Local().Format(time.RFC3339))
	}
	return b.String()
}
