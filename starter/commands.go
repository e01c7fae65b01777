package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/logging"
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
		c.setPriorityCmd(), c.listCmd(), c.resubmitCmd(), c.usageCmd(),
		c.resultsCmd(), workerCmd(), c.devCmd(), c.demoCmd(), c.clusterCmd(),
		c.uploadCmd(), c.scheduleCmd(), c.setupCmd(),
		serverCmd(), c.keysCmd(), c.loginCmd(), c.whoamiCmd(),
	)
	root.AddCommand(c.fleetCmd(), c.modelsCmd(), c.nodesCmd(), c.finetuneCmd())
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

func (c *cli) requireUser() error {
	if c.user == "" {
		return errNoUser
	}
	return nil
}

var errNoUser = fmt.Errorf("%w: say who you are with --as NAME or AUTOGLM_USER", errUsage)

// tasks is the one client every task verb calls: through the server when
// one is configured (AUTOGLM_SERVER, or `autoglm login`), else the
// operators' break-glass path to Temporal and the bucket.
func (c *cli) tasks(cmd *cobra.Command) (tclient.Client, error) {
	api, err := c.remote(cmd)
	if err != nil {
		return nil, err
	}
	if api != nil {
		return tclient.Server{API: api}, nil
	}
	tc, err := c.client(cmd.Context())
	if err != nil {
		return nil, err
	}
	return tclient.Direct{Tasks: tc, User: c.user, Tenant: c.tenant, Policy: tc.Policy, ErrNoUser: errNoUser}, nil
}

func (c *cli) submitCmd() *cobra.Command {
	var r tclient.SubmitRequest
	var wait bool
	cmd := &cobra.Command{
		Use:   "submit [PROMPT | --file BATCH.jsonl]",
		Short: "Submit a prompt or an OpenAI Batch JSONL file as a task",
		Long: `submit starts a task from a prompt or an OpenAI Batch JSONL file. With --wait
it follows the task like watch and exits like it; for a prompt it then prints
the answer (with --json: the whole output line).`,
		Example: `  autoglm submit "Summarise the Temporal docs in one line" --wait
  autoglm submit --file requests.jsonl --priority 2 --wait
  autoglm submit --attach spec.pdf --attach data.zip "Review the attached spec"`,
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
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			r.Tenant = tenantFlag(cmd, c.tenant)
			r.AttachOptions.Progress = progressBars()
			sub, err := cl.Submit(cmd.Context(), r)
			if err != nil {
				return err
			}
			if !wait {
				return c.print(sub, fmt.Sprintf("submitted task %s (%s, model %s); follow it with: autoglm watch %s", sub.ID, sub.Kind, sub.Model, sub.ID))
			}
			if !c.json {
				fmt.Fprintf(c.out, "submitted task %s (%s, model %s)\n", sub.ID, sub.Kind, sub.Model)
			}
			st, err := c.follow(cmd.Context(), cl, sub.ID)
			if err != nil {
				return err
			}
			if sub.Kind == task.KindPrompt && st.Progress.Done() > 0 {
				line, err := cl.Answer(cmd.Context(), st)
				if err != nil {
					return err
				}
				if err := c.printAnswer(line); err != nil {
					return err
				}
				return ending(st)
			}
			return c.printEnding(st)
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.File, "file", "", "an OpenAI Batch JSONL file to run")
	f.StringArrayVar(&r.Attach, "attach", nil, "a file to attach to the task (repeat for more); see `autoglm upload`")
	f.StringVar(&r.Model, "model", "", "the model (default: body.model of the file's first line, or the tenant's default model)")
	f.IntVar(&r.Priority, "priority", 0, "1 (highest) to 5; default 3")
	f.StringVar(&r.ID, "id", "", "the task ID (default: a new one)")
	f.BoolVar(&wait, "wait", false, "watch the task until it ends (and print a prompt's answer)")
	return cmd
}

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status TASK",
		Short: "Show a task's state, progress, tokens, approvals, artifacts and audit trail",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			st, err := cl.Status(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.print(st, formatStatus(st))
		},
	}
}

func (c *cli) decideCmd(name, update, short string) *cobra.Command {
	return c.decisionCmd(name, short, "task", "why (required to reject)",
		func(ctx context.Context, cl tclient.Client, id string, d tclient.Decision) (tclient.Status, error) {
			return cl.Decide(ctx, id, update, d)
		})
}

// decisionCmd is a verb that sends one decision, with its reason, to a
// task and prints the state it leaves the task in.
func (c *cli) decisionCmd(name, short, noun, reasonHelp string,
	decide func(context.Context, tclient.Client, string, tclient.Decision) (tclient.Status, error)) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   name + " TASK",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			st, err := decide(cmd.Context(), cl, args[0], tclient.Decision{Reason: reason})
			if err != nil {
				return err
			}
			return c.print(st, fmt.Sprintf("%s: %s %s is %s", name, noun, st.ID, st.State))
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", reasonHelp)
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
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			st, err := cl.Decide(cmd.Context(), args[0], task.UpdateSetPriority, tclient.Decision{Priority: p})
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
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			if dir == "" {
				dir = args[0]
			}
			files, err := cl.Results(cmd.Context(), args[0], dir, partial)
			if err != nil {
				return err
			}
			return c.print(files, fmt.Sprintf("downloaded %d file(s) of task %s, sha256 checked:\n  %s", len(files), args[0], strings.Join(files, "\n  ")))
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "where to put the files (default: ./TASK)")
	cmd.Flags().BoolVar(&partial, "partial", false, "download what there is of a task that has not ended")
	return cmd
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
