package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/config"
)

// The control plane is one Worker Deployment: its task queue's workflows
// and local activities run on the build that started them (TaskWorkflow
// and ModelAccessWorkflow, which wait on people, are pinned) or on the
// current build (the short workflows auto-upgrade). A change to workflow
// code ships as a new build, not as a workflow.GetVersion branch; the
// nodes' queues hold activities only and are unversioned, so a node is
// upgraded apart from the control plane.

// BuildID is this process's build of the control plane: cfg.BuildID, or
// the first 16 hex digits of the executable's sha256, so two different
// binaries never claim one version and the same binary always does.
func BuildID(cfg config.Config) (string, error) {
	if cfg.BuildID != "" {
		return cfg.BuildID, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("worker: naming the build (set AUTOGLM_BUILD_ID): %w", err)
	}
	f, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("worker: naming the build (set AUTOGLM_BUILD_ID): %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("worker: naming the build (set AUTOGLM_BUILD_ID): %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// deploymentOptions opt the control plane's worker into Worker
// Versioning as build buildID of cfg.Deployment.
func deploymentOptions(cfg config.Config, buildID string) sdkworker.DeploymentOptions {
	return sdkworker.DeploymentOptions{
		UseVersioning:             true,
		Version:                   sdkworker.WorkerDeploymentVersion{DeploymentName: cfg.Deployment, BuildID: buildID},
		DefaultVersioningBehavior: workflow.VersioningBehaviorAutoUpgrade,
	}
}

// pinned registers a workflow that waits on people: it stays on the build
// that started it until it continues as new.
var pinned = workflow.RegisterOptions{VersioningBehavior: workflow.VersioningBehaviorPinned}

// SetCurrent makes buildID the current version of deployment, waiting
// until that build's workers have polled: the rollout step of `autoglm
// setup --current-build`.
func SetCurrent(ctx context.Context, tc client.Client, deployment, buildID string, log *logrus.Logger) error {
	cfg := config.Config{Deployment: deployment, Promote: config.PromoteAlways}
	return promote(ctx, tc, cfg, buildID, log)
}

// promote makes buildID the deployment's current version as cfg.Promote
// says. The server learns of a version from its pollers, so promote
// retries until the version is registered or ctx ends.
func promote(ctx context.Context, tc client.Client, cfg config.Config, buildID string, log *logrus.Logger) error {
	if cfg.Promote == config.PromoteNever {
		return nil
	}
	h := tc.WorkerDeploymentClient().GetHandle(cfg.Deployment)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		done, err := promoteOnce(ctx, h, cfg.Promote, buildID)
		if done {
			if err == nil {
				log.WithFields(logrus.Fields{"deployment": cfg.Deployment, "build_id": buildID}).Info("this build is the control plane's current version")
			}
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("worker: making build %s current in deployment %s: %w (last: %v)", buildID, cfg.Deployment, ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

// promoteOnce tries once; done is false when the server does not know
// the deployment or the version yet.
func promoteOnce(ctx context.Context, h client.WorkerDeploymentHandle, mode, buildID string) (done bool, err error) {
	d, err := h.Describe(ctx, client.WorkerDeploymentDescribeOptions{})
	if err != nil {
		return !isNotYet(err), err
	}
	cur := d.Info.RoutingConfig.CurrentVersion
	if cur != nil && (cur.BuildID == buildID || mode == config.PromoteIfNone) {
		return true, nil
	}
	registered := false
	for _, v := range d.Info.VersionSummaries {
		registered = registered || v.Version.BuildID == buildID
	}
	if !registered {
		return false, fmt.Errorf("build %s has not polled yet", buildID)
	}
	_, err = h.SetCurrentVersion(ctx, client.WorkerDeploymentSetCurrentVersionOptions{
		BuildID: buildID, ConflictToken: d.ConflictToken, IgnoreMissingTaskQueues: true,
	})
	// A lost race with another worker's promotion is tried again.
	var fp *serviceerror.FailedPrecondition
	if errors.As(err, &fp) || isNotYet(err) {
		return false, err
	}
	return true, err
}

func isNotYet(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
