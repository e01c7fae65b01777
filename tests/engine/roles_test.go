package engine

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/llm/testmodel"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// The control plane runs apart from the GPU nodes: a process with
// AUTOGLM_WORKER_ROLE=control polls only autoglm-tasks, one with node
// polls only its node and model queues, and a task runs through both
// with exact output.
func TestControlPlaneApartFromNodes(t *testing.T) {
	ctx := testenv.Context(t, 3*time.Minute)
	control := suite.StartWorker(t, testenv.WorkerOptions{Node: "control", ControlOnly: true})
	gpu := suite.StartWorker(t, testenv.WorkerOptions{Node: "gpu", Env: []string{"AUTOGLM_WORKER_ROLE=node", "AUTOGLM_MODELS=" + testmodel.DefaultModel}})

	in := submit(t, ctx, "roles", 30)
	testenv.WaitState(t, ctx, suite.tasks, in.id, task.AwaitingApproval)
	approve(t, ctx, in.id)
	exact(t, ctx, in)

	polled := func(w *testenv.Worker) string {
		b, err := os.ReadFile(w.Log)
		if err != nil {
			t.Fatal(err)
		}
		var qs []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `msg="Started Worker"`) {
				_, q, _ := strings.Cut(l, "TaskQueue=")
				q, _, _ = strings.Cut(q, " ")
				qs = append(qs, q)
			}
		}
		return strings.Join(qs, ",")
	}
	if got := polled(control); got != task.TaskQueue {
		t.Errorf("the control plane polled %q; want %s only", got, task.TaskQueue)
	}
	if got, want := polled(gpu), task.NodeQueue("gpu")+","+task.ModelQueue(testmodel.DefaultModel); got != want {
		t.Errorf("the node polled %q; want %q", got, want)
	}
}
