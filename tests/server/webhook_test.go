package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/apiclient"
	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
	"github.com/autoglm-flow/autoglm-flow/internal/testenv"
	"github.com/autoglm-flow/autoglm-flow/internal/webhook"
)

// receiverSecret signs the deliveries to the suite's receiver (whsec_ +
// base64).
const receiverSecret = "whsec_c2VydmVyLXRlc3QtcmVjZWl2ZXItc2lnbmluZy1rZXk="

// receiver is a webhook receiver of ours on a loopback port: it keeps
// every delivery by webhook-id with whether its signature verified.
type receiver struct {
	url  string
	mu   sync.Mutex
	got  map[string]delivery
	seen chan struct{} // closed and replaced on every delivery
}

type delivery struct {
	Body     []byte
	Verified bool
}

func startReceiver(e *testenv.Env) (*receiver, error) {
	os.Setenv("SERVER_TEST_WEBHOOK_SECRET", receiverSecret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hooks", got: map[string]delivery{}, seen: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		body, _ := io.ReadAll(q.Body)
		ok := webhook.Verify(receiverSecret, q.Header, body, time.Now(), 5*time.Minute) == nil
		r.mu.Lock()
		r.got[q.Header.Get("webhook-id")] = delivery{Body: body, Verified: ok}
		close(r.seen)
		r.seen = make(chan struct{})
		r.mu.Unlock()
		if !ok {
			http.Error(w, "bad signature", http.StatusBadRequest)
		}
	})}
	go srv.Serve(ln)
	e.Defer(func() { srv.Close() })
	return r, nil
}

// wait returns the delivery of event id once it has come.
func (r *receiver) wait(t *testing.T, id string) delivery {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	for {
		r.mu.Lock()
		d, ok := r.got[id]
		seen := r.seen
		r.mu.Unlock()
		if ok {
			return d
		}
		select {
		case <-seen:
		case <-ctx.Done():
			t.Fatalf("no delivery of %s", id)
		}
	}
}

// TestFineTuneWebhooks: a fine-tuning job that succeeds and one that is
// cancelled while it trains are emitted to tenant tuned's subscriber
// as OpenAI's fine_tuning.job.succeeded and fine_tuning.job.cancelled
// events, signed as every delivery (Standard Webhooks), in OpenAI's shape
// {id, object: "event", created_at, type, data: {id: "ftjob-…"}}.
func TestFineTuneWebhooks(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	t.Setenv("TESTTRAINER_STEP_DELAY", "50ms")
	api := apiclient.New(suite.url, suite.keys["alice"])
	submit := func(epochs, batch int) string {
		sub, err := api.FineTune(ctx, taskclient.SubmitRequest{
			Tenant: "tuned", Model: "glm-4-test", File: chatFile(t, 10),
			FineTune: &task.FineTune{Hyperparameters: task.Hyperparameters{NEpochs: task.Number(float64(epochs)), BatchSize: task.Number(float64(batch))}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return sub.ID
	}
	done, long := submit(1, 8), submit(50, 1)
	eventually(t, ctx, "the long job to train", func() (bool, error) {
		var st server.TaskStatus
		must(t, ctx, http.StatusOK, "alice", "GET", "/api/v1/fine-tunes/"+long, nil, &st)
		return st.State == task.Running, nil
	})
	must(t, ctx, http.StatusOK, "alice", "POST", "/api/v1/fine-tunes/"+long+"/cancel", server.DecisionBody{Reason: "webhook test"}, nil)

	for id, want := range map[string]struct {
		state task.State
		typ   string
	}{
		done: {task.Completed, task.EventFineTuningSucceeded},
		long: {task.Cancelled, task.EventFineTuningCancelled},
	} {
		eventID := "evt_" + id + "_" + string(want.state)
		d := suite.receiver.wait(t, eventID)
		var ev webhook.Payload
		if !d.Verified || json.Unmarshal(d.Body, &ev) != nil {
			t.Fatalf("delivery of %s: verified %t, %s", eventID, d.Verified, d.Body)
		}
		if ev.ID != eventID || ev.Object != "event" || ev.Type != want.typ || ev.CreatedAt == 0 || ev.Data["id"] != server.FineTuneJobIDPrefix+id {
			t.Errorf("event %s: %s", eventID, d.Body)
		}
		if strings.Contains(string(d.Body), "sums") {
			t.Errorf("the event carries the training file's content: %s", d.Body)
		}
	}
}
