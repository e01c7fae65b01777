//go:build upgradetest

package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// buildChange, in the build tests/upgrade rolls out second, adds a timer
// before the first stage: a change of commands that no history recorded
// by the first build replays, as a real incompatible change would be.
func buildChange(ctx workflow.Context) error {
	return workflow.Sleep(ctx, time.Millisecond)
}
