package task

import "time"

// LogArchiveWorkflowType is the registered name of the workflow that
// compresses old task logs into the archive.
const LogArchiveWorkflowType = "LogArchiveWorkflow"

// LogArchiveScheduleID is the Temporal Schedule that starts the log
// archive; `autoglm schedule install` (or a worker, if configured) creates
// it, and its runs have workflow IDs that start with LogArchiveWorkflowID.
const (
	LogArchiveScheduleID = "autoglm-log-archive"
	LogArchiveWorkflowID = "log-archive"
)

// DefaultLogArchiveAge is how old a task log gets before it is archived.
const DefaultLogArchiveAge = 7 * 24 * time.Hour

// LogArchiveInput starts (or continues) a LogArchiveWorkflow.
type LogArchiveInput struct {
	// Now is the time logs are aged from; zero is when the run starts. A
	// test sets it in the future to archive logs written a moment ago.
	Now time.Time `json:"now,omitzero"`
	// OlderThan: logs last written before Now-OlderThan are archived;
	// zero is DefaultLogArchiveAge.
	OlderThan time.Duration `json:"older_than,omitempty"`
	// After is the log key to continue after, when a run continued as new.
	After string `json:"after,omitempty"`
	// SoFar are the counts of the runs before, when it continued as new.
	SoFar LogArchiveResult `json:"so_far,omitzero"`
}

// LogArchiveResult counts what a LogArchiveWorkflow did.
type LogArchiveResult struct {
	// Tasks whose old logs were archived.
	Tasks int `json:"tasks"`
	// Chunks are the log objects archived and removed.
	Chunks int `json:"chunks"`
	// Bytes of log archived (before compression).
	Bytes int64 `json:"bytes"`
	// Failed are the tasks whose logs could not be archived this time;
	// the next run tries again.
	Failed int `json:"failed"`
	// Runs is how many runs (continued as new) the work took.
	Runs int `json:"runs"`
}
