package taskclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// LogArchiveSchedule is how often LogArchiveWorkflow runs and what it
// archives.
type LogArchiveSchedule struct {
	// Every is the time between runs; 0 is a day.
	Every time.Duration `json:"every"`
	// OlderThan is the age past which logs are archived; 0 is 7 days.
	OlderThan time.Duration `json:"older_than"`
}

// DefaultLogArchiveEvery is how often the log archive runs by default.
const DefaultLogArchiveEvery = 24 * time.Hour

func (s LogArchiveSchedule) withDefaults() LogArchiveSchedule {
	if s.Every <= 0 {
		s.Every = DefaultLogArchiveEvery
	}
	if s.OlderThan <= 0 {
		s.OlderThan = task.DefaultLogArchiveAge
	}
	return s
}

// logArchiveRunTimeout bounds one run of the log archive (a run continues
// as new long before, so this is a guard, not a plan).
const logArchiveRunTimeout = 6 * time.Hour

func (s LogArchiveSchedule) spec() client.ScheduleSpec {
	return client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: s.Every}}}
}

func (s LogArchiveSchedule) action() *client.ScheduleWorkflowAction {
	return &client.ScheduleWorkflowAction{
		ID:                  task.LogArchiveWorkflowID,
		Workflow:            task.LogArchiveWorkflowType,
		Args:                []any{task.LogArchiveInput{OlderThan: s.OlderThan}},
		TaskQueue:           task.TaskQueue,
		WorkflowRunTimeout:  logArchiveRunTimeout,
		WorkflowTaskTimeout: 10 * time.Second,
	}
}

// InstallLogArchiveSchedule creates the Temporal Schedule that runs
// LogArchiveWorkflow, or updates it to s if it exists, so that running it
// again (every worker start may) is harmless. A run that would overlap the
// one before is skipped. It reports whether it created the schedule.
func InstallLogArchiveSchedule(ctx context.Context, tc client.Client, s LogArchiveSchedule) (created bool, err error) {
	s = s.withDefaults()
	sc := tc.ScheduleClient()
	_, err = sc.Create(ctx, client.ScheduleOptions{
		ID:            task.LogArchiveScheduleID,
		Spec:          s.spec(),
		Action:        s.action(),
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: time.Hour,
		Note:          "installed by autoglm: archive task logs older than " + s.OlderThan.String(),
	})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return false, fmt.Errorf("creating schedule %s: %w", task.LogArchiveScheduleID, err)
	}
	err = sc.GetHandle(ctx, task.LogArchiveScheduleID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			sched := in.Description.Schedule
			spec := s.spec()
			sched.Spec = &spec
			sched.Action = s.action()
			if sched.Policy == nil {
				sched.Policy = &client.SchedulePolicies{}
			}
			sched.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
			return &client.ScheduleUpdate{Schedule: &sched}, nil
		},
	})
	if err != nil {
		return false, fmt.Errorf("updating schedule %s: %w", task.LogArchiveScheduleID, err)
	}
	return false, nil
}

// LogArchiveScheduleInfo is what `autoglm schedule show` prints.
type LogArchiveScheduleInfo struct {
	LogArchiveSchedule
	Paused     bool        `json:"paused"`
	NextRuns   []time.Time `json:"next_runs"`
	RecentRuns []time.Time `json:"recent_runs,omitempty"`
}

// DescribeLogArchiveSchedule reads the schedule back; a missing one is
// task.ErrNotFound.
func DescribeLogArchiveSchedule(ctx context.Context, tc client.Client) (LogArchiveScheduleInfo, error) {
	d, err := tc.ScheduleClient().GetHandle(ctx, task.LogArchiveScheduleID).Describe(ctx)
	if err != nil {
		return LogArchiveScheduleInfo{}, scheduleErr(err)
	}
	var info LogArchiveScheduleInfo
	if spec := d.Schedule.Spec; spec != nil && len(spec.Intervals) > 0 {
		info.Every = spec.Intervals[0].Every
	}
	if a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok && len(a.Args) > 0 {
		var in task.LogArchiveInput
		if p, ok := a.Args[0].(*commonpb.Payload); ok && converter.GetDefaultDataConverter().FromPayload(p, &in) == nil {
			info.OlderThan = in.OlderThan
		}
	}
	if d.Schedule.State != nil {
		info.Paused = d.Schedule.State.Paused
	}
	info.NextRuns = d.Info.NextActionTimes
	for _, r := range d.Info.RecentActions {
		info.RecentRuns = append(info.RecentRuns, r.ActualTime)
	}
	return info, nil
}

// DeleteLogArchiveSchedule removes the schedule; runs already started go on.
func DeleteLogArchiveSchedule(ctx context.Context, tc client.Client) error {
	return scheduleErr(tc.ScheduleClient().GetHandle(ctx, task.LogArchiveScheduleID).Delete(ctx))
}

// TriggerLogArchive starts a run now, whatever the schedule's timing.
func TriggerLogArchive(ctx context.Context, tc client.Client) error {
	return scheduleErr(tc.ScheduleClient().GetHandle(ctx, task.LogArchiveScheduleID).Trigger(ctx, client.ScheduleTriggerOptions{
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	}))
}

func scheduleErr(err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return task.Errorf(task.NotFound, "no schedule %s: install it with `autoglm schedule install`", task.LogArchiveScheduleID)
	}
	return err
}
