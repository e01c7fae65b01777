package testenv

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// StartWithTaskAttributes starts a workflow in namespace that sets every
// search attribute a task sets, as a task's start does, and terminates
// it: nil once the namespace's frontend takes them. No worker runs it.
func StartWithTaskAttributes(ctx context.Context, tc client.Client, namespace string) error {
	nc, err := client.NewClientFromExisting(tc, client.Options{Namespace: namespace})
	if err != nil {
		return err
	}
	defer nc.Close()
	id := "attribute-probe-" + RandHex(4)
	run, err := nc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: "attribute-probe",
		TypedSearchAttributes: temporal.NewSearchAttributes(
			task.AttrTenant.ValueSet("t"), task.AttrSubmitter.ValueSet("s"), task.AttrModel.ValueSet("m"),
			task.AttrKind.ValueSet(string(task.KindBatch)), task.AttrState.ValueSet(string(task.Submitted)), task.AttrPriority.ValueSet(3)),
	}, "AttributeProbe")
	if err != nil {
		return fmt.Errorf("starting a workflow with the task's search attributes in namespace %s: %w", namespace, err)
	}
	return nc.TerminateWorkflow(ctx, id, run.GetRunID(), "attribute probe")
}
