package workflows_test

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/workflows"
)

// TestReplay replays histories recorded on the real local stack (the dev
// server, MinIO, a worker and the test model) against today's
// TaskWorkflow. It fails when a change to the workflow would break the
// tasks running in production: a different sequence of commands for the
// same events. Such a change needs workflow.GetVersion, or a new workflow
// type.
//
// The histories, recorded with `autoglm demo` and `autoglm dev`, then
// `temporal workflow show --output json`:
//   - task_approved.json: the demo; bob approves, the batch completes.
//   - task_rejected.json: bob rejects with a reason.
//   - task_priority_approved.json: mallory's approve is refused (and left
//     no event), olga sets priority 1, bob approves, it completes.
//   - task_cancelled.json: alice cancels her task while it awaits approval.
//   - task_prompt_by_reference.json: a prompt stored in the bucket before
//     the workflow started (its input holds only the reference); completes.
//   - task_cancelled_running.json: alice cancels her batch while it runs;
//     the partial output is collected.
//   - task_server_asserted.json: through `autoglm server`: a plain
//     `temporal workflow update execute --name approve` is refused (and left
//     no event), olga sets priority 1 and bob approves, each update carrying
//     the server's signed actor assertion; it completes.
//   - the durability paths (shards, pause/resume, failure, expiry, split
//     brain, outage, corrupt part), recorded by tests/durability.
//   - task_ops_{approved,rejected,cancelled}.json: the same three after the
//     ops-approval-timer and ops-outcome-status changes (timer cancelled,
//     rejected and cancelled tasks closed as failed executions).
//   - task_local_{shards_completed,paused_resumed,cancelled_running_partial,failed}.json:
//     durability paths after perf-local-control-stages (authorize, the
//     first dispatch and archive as local activities),
//     recorded by tests/durability.
//   - task_trust_approved.json: after the policy left the history: the
//     Authorize result holds limits only, the updates' assertions are v2
//     (the actor's roles signed); an auditor's and the submitter's signed
//     approvals are refused (no event), a reviewer's accepted. Recorded,
//     opened with the codec, by tests/ops TestHistoryHoldsNoPolicy.
//   - task_continued_{approval,paused}.json: a run that continued as new
//     while it waited for its second approval, or while paused (ending
//     in WorkflowExecutionContinuedAsNew), and the run that took the task
//     over and completed it (_last), recorded by tests/durability
//     TestContinueAsNewCarriesTheTask.
//   - task_handed_back.json: the re-dispatch path: a node's model server
//     stays down, the node hands the inference back after its hold limit,
//     and the task is dispatched again to another node, which completes
//     it (tests/durability TestLongOutageHandsTheWorkToAnotherNode).
//   - task_redispatched.json: a node dies with its record still looking
//     alive; the shard dispatched to its queue is not started within the
//     node start timeout and is dispatched again to the live node
//     (tests/durability TestDeadNodesShardIsDispatchedAgain).
//   - task_handback_{shards_completed,paused_resumed,pause_resume_at_once,cancelled_running_partial,expired}.json:
//     the durability paths after replay-outage-hand-back (its marker
//     before the first dispatch; an expiry closed as a failed
//     execution), recorded by tests/durability TestLifecyclePaths.
//   - task_localscreen_{shards_completed,paused_resumed,failed,expired,cancelled_running_partial}.json:
//     the same paths after speed-local-screen (a small input screened in a
//     local activity, in the first workflow task with authorize), recorded
//     by tests/durability.
//   - task_speed_{shards_completed,paused_resumed,failed,expired,cancelled_running_partial}.json:
//     the same after speed-local-screen version 2 (the end's announcement
//     local too; passing states set no search attribute), recorded by
//     tests/durability.
//   - task_speed_handback_*.json: the lifecycle paths with both
//     speed-local-screen 2 and replay-outage-hand-back, as the merged
//     code runs them, recorded by tests/durability TestLifecyclePaths.
//
// tests/hardening and tests/durability record theirs with
// AUTOGLM_RECORD_HISTORIES=$PWD/workflows/testdata (an absolute path).
//
// To record a new one, run the stack with `./bin/autoglm dev`, drive a
// task with the CLI, then:
//
//	./bin/temporal workflow show -w task-ID --output json > workflows/testdata/task_NAME.json
func TestReplay(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "task_*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.TaskWorkflow, workflow.RegisterOptions{Name: task.WorkflowType})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatalf("replaying %s: %v", file, err)
			}
		})
	}
}
