package testenv

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// StartWithTaskAttributes starts a workflow in namespace with a task's
// own start options (its search attributes among them) and terminates
// it: nil once the namespace's frontend takes them. No worker runs it.
func StartWithTaskAttributes(ctx context.Context, tc client.Client, namespace string) error {
	nc, err := client.NewClientFromExisting(tc, client.Options{Namespace: namespace})
	if err != nil {
		return err
	}
	defer nc.Close()
	in := task.Input{ID: "attribute-probe-" + RandHex(4), Tenant: "t", Submitter: "s", Model: "m", Kind: task.KindBatch, Priority: 3}
	run, err := nc.ExecuteWorkflow(ctx, taskclient.StartOptions(in), "AttributeProbe")
	if err != nil {
		return fmt.Errorf("starting a workflow with the task's search attributes in namespace %s: %w", namespace, err)
	}
	return nc.TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "attribute probe")
}
