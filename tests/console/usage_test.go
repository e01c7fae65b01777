package console

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
)

// TestUsagePage: after a batch completes, the usage page draws the
// tenant's tokens of the day as bars and states the same total as the
// usage API.
func TestUsagePage(t *testing.T) {
	ctx := testenv.Context(t, 3*time.Minute)
	root := newBrowser(t)
	var sub server.Submitted
	api(t, ctx, http.StatusCreated, "alice", "POST", "/api/v1/tasks", batchFile(3, "usage"), "application/jsonl", &sub)
	st := testenv.WaitState(t, ctx, suite.tasks, sub.ID, task.Completed)
	if st.Usage.TotalTokens == 0 {
		t.Fatalf("the completed batch has no token usage: %+v", st.Usage)
	}
	var rep struct {
		Data []struct {
			Model       string `json:"model"`
			TotalTokens int64  `json:"total_tokens"`
		} `json:"data"`
	}
	api(t, ctx, http.StatusOK, "alice", "GET", "/api/v1/usage?tenant=demo", nil, "", &rep)
	var total int64
	for _, r := range rep.Data {
		total += r.TotalTokens
	}
	alice := openTab(t, root, "alice")
	alice.signInWithKey(ctx, "alice")
	alice.open(ctx, "/console/usage", "glm-4-test", fmt.Sprintf("%s tokens in all", humanize.Comma(total)))
	if n := alice.eval(`String(document.querySelectorAll("svg.chart rect").length)`); n == "0" {
		t.Errorf("the usage chart has no bars")
	}
	alice.shot("usage")
}
