package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	tclient "github.com/autoglm-flow/autoglm-flow/internal/client"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// finetuneCmd is `autoglm finetune`: fine-tuning tasks, a kind of task
// with the same lifecycle, roles and audit trail as a batch.
func (c *cli) finetuneCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "finetune",
		Short: "Fine-tune a base model on an OpenAI chat fine-tuning file",
		Long: `A fine-tuning task trains a base model the tenant may use on a training file
(OpenAI's chat fine-tuning JSONL: "messages" with system/user/assistant roles,
at least 10 examples) on a node that serves that model. It is screened,
approved and audited as a batch is; the node saves checkpoints as it trains,
and any retry resumes from the newest verified one. The trained model goes to
models/<tenant>/<name>/, named ft:<base>:<tenant>:<suffix>:<task id>.

Every verb goes through the server when one is configured (AUTOGLM_SERVER, or
autoglm login), and takes --json.`,
	}
	cmd.AddCommand(c.finetuneCreateCmd(), c.finetuneStatusCmd(), c.finetuneWatchCmd(), c.finetuneListCmd(),
		c.finetuneEventsCmd(), c.finetuneCheckpointsCmd(),
		c.finetuneDecideCmd("pause", "Stop training: the trainer saves, its checkpoint is committed, and the task waits (operators)"),
		c.finetuneDecideCmd("resume", "Go on training from the newest checkpoint, on any node serving the base model (operators)"),
		c.finetuneDecideCmd("cancel", "Stop training for good; the checkpoints are kept (operators, or the task's submitter)"))
	return cmd
}

func (c *cli) finetuneCreateCmd() *cobra.Command {
	r := taskclient.SubmitRequest{FineTune: &task.FineTune{}}
	var epochs, batch, lr string
	cmd := &cobra.Command{
		Use:   "create --file TRAIN.jsonl --model BASE",
		Short: "Start a fine-tuning task",
		Example: `  autoglm finetune create --file train.jsonl --model glm-4-9b --suffix support
  autoglm finetune create --file train.jsonl --validation-file val.jsonl --model glm-4-9b --epochs 2 --seed 7 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hp := &r.FineTune.Hyperparameters
			for _, v := range []struct {
				flag, value string
				to          *task.Auto
			}{{"epochs", epochs, &hp.NEpochs}, {"batch-size", batch, &hp.BatchSize}, {"learning-rate-multiplier", lr, &hp.LearningRateMultiplier}} {
				if err := v.to.UnmarshalJSON([]byte(autoOrNumber(v.value))); err != nil {
					return fmt.Errorf("%w: --%s %q: %v", errUsage, v.flag, v.value, err)
				}
			}
			if r.File == "" || r.Model == "" {
				return fmt.Errorf("%w: give the training file with --file and the base model with --model", errUsage)
			}
			if cmd.Flags().Changed("priority") {
				if err := task.CheckPriority(r.Priority); err != nil {
					return err
				}
			}
			if err := r.FineTune.Validate(); err != nil {
				return err
			}
			cl, err := c.tasks(cmd)
			if err != nil {
				return err
			}
			r.Tenant = tenantFlag(cmd, c.tenant)
			sub, err := cl.FineTune(cmd.Context(), r)
			if err != nil {
				return err
			}
			return c.print(sub, createdText(sub.ID, sub.Model, sub.FineTunedModel))
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.File, "file", "", "the training file (OpenAI chat fine-tuning JSONL)")
	f.StringVar(&r.ValidationFile, "validation-file", "", "a validation file in the same format")
	f.StringVar(&r.Model, "model", "", "the base model")
	f.StringVar(&r.FineTune.Suffix, "suffix", "", "up to 64 letters, digits, '-', '_' or '.' for the model's name")
	f.StringVar(&epochs, "epochs", "auto", `n_epochs: a number (1-50) or "auto" (3)`)
	f.StringVar(&batch, "batch-size", "auto", `batch_size: a number (1-256) or "auto" (8, fewer for a smaller file)`)
	f.StringVar(&lr, "learning-rate-multiplier", "auto", `learning_rate_multiplier: a number or "auto" (1)`)
	f.Int64Var(&r.FineTune.Seed, "seed", 0, "the seed: the same seed and files train the same weights")
	f.IntVar(&r.Priority, "priority", 0, "1 (highest) to 5; default 3")
	f.StringVar(&r.ID, "id", "", "the task ID (default: a new one)")
	return cmd
}

func createdText(id, base, model string) string {
	return fmt.Sprintf("started fine-tuning task %s on %s; the model will be %s\nfollow it with: autoglm finetune watch %s", id, base, model, id)
}

// autoOrNumber is a flag's value as task.Auto reads it.
func autoOrNumber(v string) string {
	if v == "" || v == "auto" {
		return `"auto"`
	}
	return v
}

func (c *cli) finetuneStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status TASK",
		Short: "Show a fine-tuning task's state, training progress, hyperparameters and model",
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
			return c.print(st, formatFineTune(st))
		},
	}
}

// formatFineTune is a task's status with what fine-tuning adds.
func formatFineTune(st tclient.Status) string {
	text := strings.TrimRight(formatStatus(st), "\n")
	ft := st.FineTune
	if ft == nil {
		if st.Kind != task.KindFineTune {
			text += fmt.Sprintf("\n  (a %s task, not a fine-tuning one)", st.Kind)
		}
		return text
	}
	if h := ft.Hyperparameters; h != nil {
		text += fmt.Sprintf("\n  hyperparameters: %d epoch(s), batch %d, learning rate multiplier %g, seed %d", h.NEpochs, h.BatchSize, h.LearningRateMultiplier, ft.Seed)
	}
	if ft.Step > 0 {
		text += fmt.Sprintf("\n  training: step %d, epoch %.2f, loss %.4f", ft.Step, ft.Epoch, ft.Loss)
		if ft.ResumedFrom > 0 {
			text += fmt.Sprintf(" (the last attempt resumed from step %d)", ft.ResumedFrom)
		}
	}
	if ft.FineTunedModel != "" {
		text += "\n  fine-tuned model: " + ft.FineTunedModel
	}
	return text
}
