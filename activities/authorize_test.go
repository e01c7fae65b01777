package activities

import (
	"encoding/json"
	"testing"
	"time"
)

// An Authorize result recorded before the policy left the history (here
// as workflows/testdata/task_approved.json holds it) still gives its
// tasks their quorum and deadline when they replay or continue; the
// members and words it carries are dropped.
func TestAuthorizeResultReadsRecordedGrant(t *testing.T) {
	recorded := `{"grant":{"tenant":"demo","members":[{"user":"bob","roles":["reviewer"]}],"quorum":2,"approval_deadline":86400000000000},` +
		`"auto_approve_max_requests":10,"max_batch_requests":200000,"max_request_bytes":1048576,"sensitive_words":["password"],"heartbeat_timeout":60000000000,"shard_requests":50000}`
	var r AuthorizeResult
	if err := json.Unmarshal([]byte(recorded), &r); err != nil {
		t.Fatal(err)
	}
	want := AuthorizeResult{Quorum: 2, ApprovalDeadline: 24 * time.Hour, AutoApproveMaxRequests: 10, MaxBatchRequests: 200000, MaxRequestBytes: 1 << 20, HeartbeatTimeout: time.Minute, PieceRequests: 50000}
	if r != want {
		t.Fatalf("recorded result read as\n %+v\nwant\n %+v", r, want)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var again AuthorizeResult
	if err := json.Unmarshal(b, &again); err != nil || again != want {
		t.Fatalf("the new shape does not round-trip: %s → %+v (%v)", b, again, err)
	}
}
