package worker

import (
	"os"

	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// registerFleet adds the fleet's workflows and activities: the model
// mirror on the shared queue (any worker may copy a model).
func registerFleet(shared sdkworker.Worker, acts *activities.Activities) error {
	up, err := model.UpstreamFromEnv()
	if err != nil {
		return err
	}
	shared.RegisterWorkflowWithOptions(workflows.MirrorWorkflow, workflow.RegisterOptions{Name: task.MirrorWorkflowType})
	shared.RegisterActivity(&activities.Mirror{Store: acts.Store, Upstream: up, StagingDir: os.Getenv("AUTOGLM_MIRROR_STAGING_DIR")})
	return nil
}
