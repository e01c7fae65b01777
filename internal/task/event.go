package task

import "time"

// NotifyWorkflowType is the registered name of the workflow that delivers
// one event to the tenant's webhook subscribers.
const NotifyWorkflowType = "NotifyWorkflow"

// NotifyWorkflowID is the workflow of one event: an event is delivered
// once however many times it is emitted.
func NotifyWorkflowID(eventID string) string { return "event-" + eventID }

// Event types. The batch.* ones are OpenAI's, with the same meaning; the
// autoglm.* ones are ours.
const (
	EventBatchCompleted       = "batch.completed"
	EventBatchFailed          = "batch.failed"
	EventBatchCancelled       = "batch.cancelled"
	EventBatchExpired         = "batch.expired"
	EventTaskAwaitingApproval = "autoglm.task.awaiting_approval"
	EventTaskApproved         = "autoglm.task.approved"
	EventTaskRejected         = "autoglm.task.rejected"
	EventAccessRequestDecided = "autoglm.access_request.decided"
	EventFineTuningSucceeded  = "fine_tuning.job.succeeded"
	EventFineTuningFailed     = "fine_tuning.job.failed"
	EventFineTuningCancelled  = "fine_tuning.job.cancelled"
)

// EventOf is the event a task of kind k emits when it ends in state s;
// "" for states that emit none. A fine-tuning task ends with OpenAI's
// fine_tuning.job.* events (an expired one failed, as its job's status
// says), a batch with batch.*.
func EventOf(k Kind, s State) string {
	if k == KindFineTune {
		switch s {
		case Completed:
			return EventFineTuningSucceeded
		case Failed, Expired:
			return EventFineTuningFailed
		case Cancelled:
			return EventFineTuningCancelled
		}
	}
	switch s {
	case Completed:
		return EventBatchCompleted
	case Failed:
		return EventBatchFailed
	case Cancelled:
		return EventBatchCancelled
	case Expired:
		return EventBatchExpired
	case Rejected:
		return EventTaskRejected
	}
	return ""
}

// Event is what a task or an access request emits, and the input of the
// NotifyWorkflow that delivers it. Data holds references (IDs,
// states), never user content.
type Event struct {
	Tenant    string            `json:"tenant"`
	ID        string            `json:"id"`
	Type      string            `json:"type"`
	CreatedAt time.Time         `json:"created_at"`
	Data      map[string]string `json:"data"`
}

// Delivery is one subscriber's receipt of an event: the audit trail of
// webhooks.
type Delivery struct {
	Subscriber string    `json:"subscriber"`
	Delivered  bool      `json:"delivered"`
	Attempts   int32     `json:"attempts"`
	StatusCode int       `json:"status_code,omitempty"`
	Time       time.Time `json:"time"`
	Error      string    `json:"error,omitempty"`
}

// NotifyResult is what a NotifyWorkflow did, per subscriber.
type NotifyResult struct {
	Event      string     `json:"event"`
	Type       string     `json:"type"`
	Deliveries []Delivery `json:"deliveries"`
}
