package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// TestFleetCommandKeepsToItsConcurrencyAndReportsEachNode runs a command on
// five nodes, two at a time, each taking a minute of workflow time: the
// run takes three minutes (not one, not five), every part goes to its
// node's own queue, and the failing node is reported with its reason while
// the others are ok.
func TestFleetCommandKeepsToItsConcurrencyAndReportsEachNode(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(FleetCommandWorkflow, workflow.RegisterOptions{Name: task.FleetCommandWorkflowType})
	env.RegisterActivity(&activities.Activities{})
	env.RegisterActivity(&activities.NodeAgent{})
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	env.OnActivity((&activities.Activities{}).SelectNodes, mock.Anything, mock.Anything).Return(activities.SelectNodesResult{Nodes: nodes}, nil)
	env.OnActivity((&activities.Activities{}).RecordFleetAudit, mock.Anything, mock.Anything).Return(task.ObjectRef{Key: "audit/fleet/x.json"}, nil)
	var mu sync.Mutex
	queues := map[string]bool{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == "RunNodeCommand" {
			mu.Lock()
			queues[info.TaskQueue] = true
			mu.Unlock()
		}
	})
	env.OnActivity((&activities.NodeAgent{}).RunNodeCommand, mock.Anything, mock.Anything).After(time.Minute).Return(
		func(ctx context.Context, in activities.NodeCommandInput) (activities.NodeCommandResult, error) {
			q := activity.GetInfo(ctx).TaskQueue
			if q == task.NodeQueue("n3") {
				return activities.NodeCommandResult{}, errors.New("model server unreachable")
			}
			return activities.NodeCommandResult{Node: strings.TrimPrefix(q, "autoglm-node-"), Detail: "fine"}, nil
		})
	start := env.Now()
	env.ExecuteWorkflow(task.FleetCommandWorkflowType, task.FleetCommand{ID: "c1", Actor: "olga", Action: task.ActionHealth, Concurrency: 2, NodeTimeout: time.Hour})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res task.FleetResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if took := env.Now().Sub(start); took < 3*time.Minute || took >= 4*time.Minute {
		t.Fatalf("five one-minute parts two at a time took %s of workflow time; want 3m", took)
	}
	if len(queues) != 5 {
		t.Fatalf("the parts ran on queues %v; want each node's own", queues)
	}
	if res.OK != 4 || res.Failed != 1 || !res.Partial || res.Nodes[2].Node != "n3" || res.Nodes[2].Status != task.NodeFailed || !strings.Contains(res.Nodes[2].Reason, "unreachable") {
		t.Fatalf("result %+v; want n3 failed with its reason, the other four ok", res)
	}
	if res.Actor != "olga" || res.Audit.Key == "" {
		t.Fatalf("result %+v lacks who ran it or its audit record", res)
	}
}
