package main

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/setup"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/worker"
)

func (c *cli) setupCmd() *cobra.Command {
	var dynamicConfig, bucketPolicy, currentBuild string
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Prepare a Temporal namespace and a bucket for autoglm-flow, and say what is missing",
		Long: `setup makes a real cluster ready, once, with operator rights:

  - registers the search attributes tasks set (Tenant, Submitter, Model,
    TaskKind, TaskState, TaskPriority) through the operator API; a worker
    refuses to start on a namespace without them;
  - creates the bucket with versioning, and writes its lifecycle rules
    (AUTOGLM_RETENTION_* as for the worker);
  - checks the server's dynamic config file for what priority and fairness
    need (matching.useNewMatcher, matching.enableFairness);
  - with --bucket-policy, gives the worker's own account (WORKER_ACCESS_KEY)
    only what a worker does in the bucket;
  - with --current-build, makes that build of the control plane's Worker
    Deployment (AUTOGLM_DEPLOYMENT) the current version once its workers
    poll: new tasks start on it, running ones stay on the build that
    started them (see the README's "Changing running code").

It is idempotent: run again, it adds nothing. It prints every check, and
exits 1 when something is still missing.`,
		Example: `  autoglm setup
  autoglm setup --dynamic-config docker/temporal-dynamicconfig.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tc, err := c.client(cmd.Context())
			if err != nil {
				return err
			}
			opts, err := config.TemporalOptions(nil)
			if err != nil {
				return err
			}
			ls, err := worker.LogSettingsFromEnv()
			if err != nil {
				return err
			}
			cfg, err := config.FromEnv()
			if err != nil {
				return err
			}
			rep := setup.Run(cmd.Context(), tc.Temporal, tc.Store, setup.Options{
				BucketPolicyFile:  bucketPolicy,
				S3:                cfg.S3,
				Namespace:         cmp.Or(opts.Namespace, client.DefaultNamespace),
				DynamicConfigFile: dynamicConfig,
				Retention:         retentionOr(ls.Retention),
				NoLifecycle:       !ls.ApplyRetention,
			})
			if err := c.print(rep, rep.String()); err != nil {
				return err
			}
			if n := len(rep.Missing()); n > 0 {
				return fmt.Errorf("setup: %d item(s) missing", n)
			}
			if currentBuild != "" {
				log := logrus.New()
				log.SetOutput(cmd.ErrOrStderr())
				ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
				defer cancel()
				if err := worker.SetCurrent(ctx, tc.Temporal, cfg.Deployment, currentBuild, log); err != nil {
					return fmt.Errorf("setup: %w", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dynamicConfig, "dynamic-config", "", "the Temporal server's dynamic config YAML to check")
	cmd.Flags().StringVar(&currentBuild, "current-build", "", "make this build ID (a worker logs its build_id) the control plane's current version")
	cmd.Flags().StringVar(&bucketPolicy, "bucket-policy", "", "a bucket policy to set, with ${BUCKET} and ${WORKER_ACCESS_KEY} filled in (docker/worker-bucket-policy.json)")
	return cmd
}

func retentionOr(r storage.Retention) storage.Retention {
	if r.Days == nil {
		return storage.DefaultRetention()
	}
	return r
}
