package durability

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// nodeStartTimeout is the workers' AUTOGLM_NODE_START_TIMEOUT here.
const nodeStartTimeout = 5 * time.Second

// Two nodes serve the model, and one of them dies (SIGKILL) just before a
// batch of two pieces is submitted; its record still looks alive, so
// dispatch sends a piece to its queue. Nobody takes the piece from there
// within the node start timeout: the task dispatches it again, avoiding
// the dead node, and completes on the live one with exact output.
func TestDeadNodesPieceIsDispatchedAgain(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	m := startModel(t, 20*time.Millisecond, "")
	opts := func(node string) workerOptions {
		return workerOptions{node: node, modelURL: m.URL(), concurrency: 2, checkpointInterval: time.Second,
			env: []string{"AUTOGLM_PIECE_REQUESTS=150", "AUTOGLM_NODE_START_TIMEOUT=" + nodeStartTimeout.String()}}
	}
	// Dispatch breaks ties by name: the dead node comes first.
	suffix := randHex(3)
	dead := startWorker(t, opts("sd-a-"+suffix))
	live := startWorker(t, opts("sd-b-"+suffix))
	dead.Signal(t, syscall.SIGKILL)
	<-dead.Done()
	t.Logf("node %s killed; node %s lives", dead.Node, live.Node)

	in := writeBatch(t, "redispatch", 300)
	id := submitApproved(t, ctx, "redispatch", in)
	exact(t, ctx, id, in)
	st, err := suite.tasks.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	audit := auditText(st)
	if !strings.Contains(audit, "2 pieces") || !strings.Contains(audit, "did not start the work within "+nodeStartTimeout.String()) {
		t.Errorf("the audit trail does not show a piece dispatched again after %s:\n%s", nodeStartTimeout, audit)
	}
	var first string
	for _, tr := range st.Audit {
		if tr.To == task.Dispatched {
			first = tr.Reason
			break
		}
	}
	if !strings.Contains(first, dead.Node) || strings.Contains(st.Node, dead.Node) {
		t.Errorf("the task was not first sent to %s and then taken from it (status node %q):\n%s", dead.Node, st.Node, audit)
	}
	save(t, ctx, id, "redispatched")
}
