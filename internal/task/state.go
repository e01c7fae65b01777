package task

import "time"

// State is where a task is in its lifecycle.
type State string

// The states of a task, in lifecycle order. The last five are final.
const (
	Submitted        State = "SUBMITTED"
	Authorized       State = "AUTHORIZED"
	Screened         State = "SCREENED"
	AwaitingApproval State = "AWAITING_APPROVAL"
	Approved         State = "APPROVED"
	Dispatched       State = "DISPATCHED"
	Running          State = "RUNNING"
	Paused           State = "PAUSED"
	Archiving        State = "ARCHIVING"
	Completed        State = "COMPLETED"
	Rejected         State = "REJECTED"
	Failed           State = "FAILED"
	Cancelled        State = "CANCELLED"
	Expired          State = "EXPIRED"
)

// Final reports whether no transition leaves s.
func (s State) Final() bool {
	switch s {
	case Completed, Rejected, Failed, Cancelled, Expired:
		return true
	}
	return false
}

// Transition is one entry of a task's audit trail.
type Transition struct {
	Time   time.Time `json:"time"`
	From   State     `json:"from,omitempty"`
	To     State     `json:"to"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason,omitempty"`
	// Key names the key that signed the actor's assertion (see
	// internal/assertion KeyID); empty where the task itself acted.
	Key string `json:"key,omitempty"`
}

// Progress of the inference stage.
type Progress struct {
	Counts
	// RatePerSecond is the recent rate of answered requests.
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	// ETASeconds is when the rest will be answered at that rate.
	ETASeconds float64 `json:"eta_seconds,omitempty"`
	// WaitingSince is when the model server stopped answering, while
	// inference holds for it instead of failing items; zero otherwise.
	WaitingSince time.Time `json:"waiting_for_model_server_since,omitzero"`
	// StoreWaitingSince is when the bucket stopped taking inference's
	// writes, while it holds its answers for it; zero otherwise.
	StoreWaitingSince time.Time `json:"waiting_for_bucket_since,omitzero"`
	// Pieces are the counts of each inference piece (the batch, or each
	// of its pieces) as the workflow last heard them: from a finished or stopped
	// attempt. Running attempts report in their heartbeats.
	Pieces []Counts `json:"pieces,omitempty"`
}

// Status is the answer of the status query: everything a person or a
// service needs to know about a task, including its audit trail.
type Status struct {
	ID        string      `json:"id"`
	Tenant    string      `json:"tenant"`
	Submitter string      `json:"submitter"`
	Model     string      `json:"model"`
	Kind      Kind        `json:"kind"`
	Priority  int         `json:"priority"`
	State     State       `json:"state"`
	Stage     string      `json:"stage"`
	Progress  Progress    `json:"progress"`
	Node      string      `json:"node,omitempty"`
	Attempts  int         `json:"attempts"`
	Screening Screening   `json:"screening"`
	Approvals []Decision  `json:"approvals,omitempty"`
	Quorum    int         `json:"quorum,omitempty"`
	Artifacts []ObjectRef `json:"artifacts,omitempty"`
	LastError string      `json:"last_error,omitempty"`
	// LastErrorType is the stable type of LastError (PermissionDenied…),
	// so a client watching the status exits as for any error of that type.
	LastErrorType ErrorType    `json:"last_error_type,omitempty"`
	Audit         []Transition `json:"audit"`
	// EarlierAudit points at the transitions the task's earlier runs
	// wrote to the bucket when they continued as new; Audit holds those
	// after it. A run carries this reference and count across
	// continue-as-new, never the growing list. Readers that show the
	// whole trail (taskclient's status, the report) read it and put it
	// in front of Audit, and then clear it; set, it says Audit is only
	// the newest part.
	EarlierAudit *EarlierAudit `json:"earlier_audit,omitempty"`
	// FineTune is a fine-tuning task's own status; nil for other kinds.
	FineTune *FineTuneStatus `json:"fine_tune,omitempty"`
	// Usage is the tokens of the answered items, once the output is
	// merged (at the end, or with the partial output of a stopped task).
	Usage Usage `json:"usage,omitzero"`
	// Origin is the task this one was resubmitted from, if any.
	Origin string `json:"origin,omitempty"`
}

// EarlierAudit is the part of a task's audit trail kept in the bucket: a
// JSON array of Transition, oldest first.
type EarlierAudit struct {
	Ref ObjectRef `json:"ref"`
	// Transitions is how many the object holds.
	Transitions int `json:"transitions"`
}

// Screening is what the screen stage found.
type Screening struct {
	Requests    int      `json:"requests"`
	Bytes       int64    `json:"bytes"`
	AutoApprove bool     `json:"auto_approve"`
	Reasons     []string `json:"reasons,omitempty"`
}

// EnteredAt is when the task last entered state, from its audit trail; the
// zero time if it never did.
func (s Status) EnteredAt(state State) time.Time {
	var at time.Time
	for _, tr := range s.Audit {
		if tr.To == state {
			at = tr.Time
		}
	}
	return at
}
