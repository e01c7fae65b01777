package task

import (
	"strings"
	"time"
)

// AccessWorkflowType is the registered name of the workflow of one request
// to bring a model in and allow it for a tenant.
const AccessWorkflowType = "ModelAccessWorkflow"

// AccessWorkflowID is the workflow ID of an access request.
func AccessWorkflowID(id string) string { return "access-" + id }

// AccessAssertionAction is the action an actor assertion names for the
// approve or reject update of an access request: not the bare update
// name, so an assertion made for a task's approval never passes for an
// access request of the same ID, nor the other way round.
func AccessAssertionAction(update string) string { return "access-request:" + update }

// The stages of an access request, in order.
const (
	StageScreening     = "screening"
	StageSecurityAudit = "security-audit"
	StageApproval      = "approval"
	StageNotification  = "notification"
	StageMirror        = "mirror"
)

// AccessRequest starts a ModelAccessWorkflow. Its updates are approve and
// reject (UpdateApprove, UpdateReject) with a DecisionRequest, its query
// QueryStatus answers an AccessStatus.
type AccessRequest struct {
	ID        string `json:"id"`
	Tenant    string `json:"tenant"`
	Requester string `json:"requester"`
	// Model is where it goes: Model.Name becomes usable by the tenant.
	Model  MirrorInput `json:"model"`
	Reason string      `json:"reason,omitempty"`
}

// Validate checks the request before a workflow starts.
func (r AccessRequest) Validate() error {
	switch {
	case r.ID == "" || len(r.ID) > MaxIDLength || strings.ContainsAny(r.ID, "/\\ \t\r\n"):
		return Errorf(InvalidInput, "access request id %q is not a valid id", r.ID)
	case r.Tenant == "" || r.Requester == "":
		return Errorf(InvalidInput, "an access request needs its tenant and requester")
	case len(r.Reason) > MaxReasonBytes:
		return Errorf(InvalidInput, "the reason is %d bytes, over the %d-byte limit", len(r.Reason), MaxReasonBytes)
	}
	return r.Model.Validate()
}

// AccessStatus is the state of an access request, with its audit trail.
type AccessStatus struct {
	ID        string       `json:"id"`
	Tenant    string       `json:"tenant"`
	Requester string       `json:"requester"`
	Model     string       `json:"model"`
	State     State        `json:"state"`
	Stage     string       `json:"stage"`
	Findings  []string     `json:"findings,omitempty"`
	Reason    string       `json:"reason,omitempty"`
	Audit     []Transition `json:"audit"`
	Mirror    MirrorResult `json:"mirror,omitzero"`
	// Deadline is when an undecided request expires.
	Deadline time.Time `json:"deadline,omitzero"`
}
