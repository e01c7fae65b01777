//go:build !upgradetest

package workflows

import "go.temporal.io/sdk/workflow"

// buildChange is where tests/upgrade's second build changes TaskWorkflow
// incompatibly (build tag upgradetest): nothing in a real build.
func buildChange(workflow.Context) error { return nil }
