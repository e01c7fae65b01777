package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/worker"
)

var errUsage = errors.New("usage")

// cli holds the global flags and the clients, made on first use so that
// `autoglm --help` needs no server.
type cli struct {
	json   bool
	user   string
	tenant string
	out    io.Writer

	tc  *taskclient.Client
	api *apiclient.Client // the API server's client, when one is configured
}

func newRoot() *cobra.Command {
	c := &cli{out: os.Stdout}
	root := &cobra.Command{
		Use:   "autoglm",
		Short: "Run LLM tasks durably on your own GPU fleet, on Temporal",
		Long: `autoglm submits LLM tasks (a prompt, or an OpenAI Batch JSONL file) and drives
them through authorize, screen, approval, dispatch, inference and archive.

Users talk to the autoglm server: set AUTOGLM_SERVER (or run autoglm login)
and you are who your API key says; no Temporal or bucket settings are needed.

Without a server the CLI talks to Temporal and the bucket itself: the
operators' break-glass path on a trusted host. The Temporal connection then
comes from TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
TEMPORAL_TLS_* or a TEMPORAL_PROFILE; the bucket from AUTOGLM_S3_*; who acts
from --as or AUTOGLM_USER, vouched for by AUTOGLM_ASSERTION_PRIVATE_KEY.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.BoolVar(&c.json, "json", false, "print JSON instead of text")
	pf.StringVar(&c.user, "as", os.Getenv("AUTOGLM_USER"), "the user you act as (default $AUTOGLM_USER)")
	pf.StringVar(&c.tenant, "tenant", envOr("AUTOGLM_TENANT", "demo"), "the tenant ($AUTOGLM_TENANT)")
	root.AddCommand(
		c.submitCmd(), c.statusCmd(), c.watchCmd(),
		c.decideCmd("approve", task.UpdateApprove, "Approve a task awaiting approval (reviewers; never your own task)"),
		c.decideCmd("reject", task.UpdateReject, "Reject a task awaiting approval, with a reason"),
		c.decideCmd("cancel", task.UpdateCancel, "Cancel a task; its partial output is kept"),
		c.decideCmd("pause", task.UpdatePause, "Pause a running task; it records a checkpoint and resumes from it"),
		c.decideCmd("resume", task.UpdateResume, "Resume a paused task from its checkpoint"),
		c.setPriorityCmd(), c.listCmd(), c.resubmitCmd(),
		c.resultsCmd(), workerCmd(), c.devCmd(), c.demoCmd(), c.clusterCmd(),
		c.uploadCmd(), c.scheduleCmd(), c.setupCmd(),
		serverCmd(), c.keysCmd(), c.loginCmd(), c.whoamiCmd(),
	)
	root.AddCommand(c.fleetCmd(), c.modelsCmd(), c.nodesCmd())
	return root
}

// client connects to Temporal and opens the bucket once.
func (c *cli) client(ctx context.Context) (*taskclient.Client, error) {
	if c.tc != nil {
		return c.tc, nil
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	opts, err := config.TemporalOptions(logging.NewSDK(log))
	if err != nil {
		return nil, err
	}
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to Temporal at %s (set TEMPORAL_ADDRESS, or run `make dev`): %w", opts.HostPort, err)
	}
	cfg, err := config.FromEnv()
	if err != nil {
		return nil, err
	}
	store, err := storage.Open(ctx, cfg.S3)
	if err != nil {
		return nil, fmt.Errorf("opening the bucket: %w", err)
	}
	policy, err := policySource()
	if err != nil {
		return nil, err
	}
	c.tc = &taskclient.Client{Temporal: tc, Store: store, Policy: policy}
	// Talking to Temporal directly is the operators' break-glass path:
	// their key signs the actor assertions the server signs otherwise.
	if c.tc.Signer, err = signerFromEnv(); err != nil {
		return nil, err
	}
	return c.tc, nil
}

// status connects and reads one task's status.
func (c *cli) status(ctx context.Context, id string) (*taskclient.Client, task.Status, error) {
	tc, err := c.client(ctx)
	if err != nil {
		return nil, task.Status{}, err
	}
	st, err := tc.Status(ctx, id)
	return tc, st, err
}

func (c *cli) requireUser() error {
	if c.user == "" {
		return fmt.Errorf("%w: say who you are with --as NAME or AUTOGLM_USER", errUsage)
	}
	return nil
}

func (c *cli) submitCmd() *cobra.Command {
	var r taskclient.SubmitRequest
	var wait bool
	cmd := &cobra.Command{
		Use:   "submit [PROMPT | --file BATCH.jsonl]",
		Short: "Submit a prompt or an OpenAI Batch JSONL file as a task",
		Example: `  autoglm submit --as alice "Summarise the Temporal docs in one line"
  autoglm submit --as alice --file requests.jsonl --priority 2 --wait
  autoglm submit --as alice --attach spec.pdf --attach data.zip "Review the attached spec"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				r.Prompt = args[0]
			}
			if cmd.Flags().Changed("priority") {
				if err := task.CheckPriority(r.Priority); err != nil {
					return err
				}
			}
			if api, err := c.remote(cmd); api != nil || err != nil {
				if err != nil {
					return err
				}
				return c.remoteSubmit(cmd, api, r, wait)
			}
			if err := c.requireUser(); err != nil {
				return err
			}
			r.Tenant, r.Submitter = c.tenant, c.user
			r.AttachOptions.Progress = progressBars()
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			in, err := tc.Submit(cmd.Context(), r)
			if err != nil && (r.File != "" || len(r.Attach) > 0) && r.ID == "" && task.TypeOf(err) == "" {
				// Uploads resume only under the same task ID.
				return fmt.Errorf("%w\nto resume the upload, run the same command with --id %s", err, in.ID)
			}
			if err != nil {
				return err
			}
			if !wait {
				return c.print(in, fmt.Sprintf("submitted task %s (%s, model %s); follow it with: autoglm watch %s", in.ID, in.Kind, in.Model, in.ID))
			}
			if !c.json {
				fmt.Fprintf(c.out, "submitted task %s (%s, model %s)\n", in.ID, in.Kind, in.Model)
			}
			return c.watch(cmd.Context(), in.ID)
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.File, "file", "", "an OpenAI Batch JSONL file to run")
	f.StringArrayVar(&r.Attach, "attach", nil, "a file to attach to the task (repeat for more); see `autoglm upload`")
	f.StringVar(&r.Model, "model", "", "the model (default: body.model of the file's first line, or the tenant's default model)")
	f.IntVar(&r.Priority, "priority", 0, "1 (highest) to 5; default 3")
	f.StringVar(&r.ID, "id", "", "the task ID (default: a new one)")
	f.BoolVar(&wait, "wait", false, "watch the task until it ends")
	return cmd
}

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status TASK",
		Short: "Show a task's state, progress, approvals, artifacts and audit trail",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if api, err := c.remote(cmd); api != nil || err != nil {
				if err != nil {
					return err
				}
				return c.remoteStatus(cmd, api, args[0])
			}
			_, st, err := c.status(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(st, formatStatus(st))
		},
	}
}

func (c *cli) decideCmd(name, update, short string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   name + " TASK",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if api, err := c.remote(cmd); api != nil || err != nil {
				if err != nil {
					return err
				}
				st, err := c.remoteDecide(cmd, api, args[0], update, server.DecisionBody{Reason: reason})
				if err != nil {
					return err
				}
				return c.print(st, fmt.Sprintf("%s: task %s is %s", name, st.ID, st.State))
			}
			if err := c.requireUser(); err != nil {
				return err
			}
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			st, err := tc.Decide(cmd.Context(), args[0], update, task.DecisionRequest{Actor: c.user, Reason: reason})
			if err != nil {
				return err
			}
			return c.print(st, fmt.Sprintf("%s: task %s is %s", name, st.ID, st.State))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required to reject)")
	return cmd
}

func (c *cli) setPriorityCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set-priority TASK PRIORITY",
		Short: "Set a task's priority, 1 (highest) to 5, for the work it has yet to schedule",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("%w: priority %q is not a number from 1 to 5", errUsage, args[1])
			}
			if api, err := c.remote(cmd); api != nil || err != nil {
				if err != nil {
					return err
				}
				st, err := c.remoteDecide(cmd, api, args[0], task.UpdateSetPriority, server.DecisionBody{Priority: p})
				if err != nil {
					return err
				}
				return c.print(st, fmt.Sprintf("task %s now has priority %d", st.ID, st.Priority))
			}
			if err := c.requireUser(); err != nil {
				return err
			}
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			st, err := tc.Decide(cmd.Context(), args[0], task.UpdateSetPriority, task.DecisionRequest{Actor: c.user, Priority: p})
			if err != nil {
				return err
			}
			return c.print(st, fmt.Sprintf("task %s now has priority %d", st.ID, st.Priority))
		},
	}
	return cmd
}

func (c *cli) resultsCmd() *cobra.Command {
	var dir string
	var partial bool
	cmd := &cobra.Command{
		Use:   "results TASK",
		Short: "Download a task's output, errors, report and attachments, checking each sha256",
		Long: `results downloads what a finished task produced. A task that has not ended
has no results yet: results says so and exits 5, unless --partial asks for
what there is (its input and attachments, and whatever has been archived).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if api, err := c.remote(cmd); api != nil || err != nil {
				if err != nil {
					return err
				}
				return c.remoteResults(cmd, api, args[0], dir, partial)
			}
			tc, st, err := c.status(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := taskclient.CheckFinished(st, partial); err != nil {
				return err
			}
			if dir == "" {
				dir = args[0]
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			refs, err := tc.Artifacts(cmd.Context(), st)
			if err != nil {
				return err
			}
			files, err := taskclient.LocalPaths(dir, refs)
			if err != nil {
				return err
			}
			for i, ref := range refs {
				if err := os.MkdirAll(filepath.Dir(files[i]), 0o755); err != nil {
					return err
				}
				if err := downloadTo(cmd.Context(), tc, ref, files[i]); err != nil {
					return err
				}
			}
			return c.print(files, fmt.Sprintf("downloaded %d file(s) of task %s, sha256 checked:\n  %s", len(files), st.ID, strings.Join(files, "\n  ")))
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "where to put the files (default: ./TASK)")
	cmd.Flags().BoolVar(&partial, "partial", false, "download what there is of a task that has not ended")
	return cmd
}

func downloadTo(ctx context.Context, tc *taskclient.Client, ref task.ObjectRef, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tc.Download(ctx, ref, f); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

func workerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run a worker: one node of the fleet (config from AUTOGLM_* and TEMPORAL_*)",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.FromEnv()
			if err != nil {
				return err
			}
			log, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				return err
			}
			return worker.Run(cmd.Context(), cfg, log)
		},
	}
}

// print writes v as JSON with --json, else the text.
func (c *cli) print(v any, text string) error {
	if c.json {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	_, err := fmt.Fprintln(c.out, text)
	return err
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
