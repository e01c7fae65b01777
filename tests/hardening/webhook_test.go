package hardening

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// trap is a TCP listener on loopback that counts the connections it
// accepts and closes them.
type trap struct {
	ln   net.Listener
	hits atomic.Int32
}

func listenTrap() (*trap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &trap{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.hits.Add(1)
			c.Close()
		}
	}()
	return t, nil
}

func (t *trap) port() int { return t.ln.Addr().(*net.TCPAddr).Port }
func (t *trap) close()    { t.ln.Close() }

// TestWebhooksCannotBeTurnedInward: an event of the hooks tenant goes to
// its two subscribers, one at https://127.0.0.1, the other at a host name
// that the worker's resolver maps to 127.0.0.1. The real worker's
// NotifyWorkflow refuses both at dial time, at once (no retry), with the
// reason in the delivery audit (the workflow's result and the audit
// record in the bucket), and nothing connects to the address.
func TestWebhooksCannotBeTurnedInward(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	ev := task.Event{
		Tenant: "hooks", ID: "evt_" + newID("inward") + "_COMPLETED", Type: "batch.completed",
		CreatedAt: time.Now().UTC(), Data: map[string]string{"id": "t-inward"},
	}
	run, err := suite.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: task.NotifyWorkflowID(ev.ID), TaskQueue: task.TaskQueue}, task.NotifyWorkflowType, ev)
	if err != nil {
		t.Fatal(err)
	}
	var res task.NotifyResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("NotifyWorkflow: %v", err)
	}
	if len(res.Deliveries) != 2 {
		t.Fatalf("deliveries %+v, want the two subscribers", res.Deliveries)
	}
	for _, d := range res.Deliveries {
		if d.Delivered || !strings.Contains(d.Error, "refused") || !strings.Contains(d.Error, "127.0.0.1 is loopback") {
			t.Errorf("%s: %+v, want refused with the reason", d.Subscriber, d)
		}
		if d.Subscriber == "resolved-loopback" && !strings.Contains(d.Error, "hooks.example.test") {
			t.Errorf("%s: %q does not name the host whose address was refused", d.Subscriber, d.Error)
		}
		var rec struct {
			Delivery task.Delivery `json:"delivery"`
		}
		key := "audit/webhooks/hooks/" + ev.ID + "/" + d.Subscriber + ".json"
		if err := getJSON(ctx, key, &rec); err != nil {
			t.Errorf("the audit record %s: %v", key, err)
		} else if rec.Delivery.Delivered || rec.Delivery.Error != d.Error || rec.Delivery.Attempts != 1 {
			t.Errorf("the audit record of %s: %+v, want the refusal on the first attempt", d.Subscriber, rec.Delivery)
		}
	}
	if n := suite.hookTrap.hits.Load(); n != 0 {
		t.Fatalf("%d connections reached the loopback address", n)
	}
}
