package ops

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/autoglm-flow/autoglm-flow/internal/codec"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// With encryption on, a task's prompt is nowhere in the raw history a
// plain client (no codec) reads (the prompt is in the bucket; the history
// holds the sealed workflow input with its reference); the codec endpoint
// opens that input for an authenticated caller of this namespace only.
func TestEncryptedHistoryHoldsNoCanaryAndTheCodecEndpointOpensIt(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	startWorker(t)
	canary := "canary-" + randHex(8)
	id := submit(t, ctx, taskclient.SubmitRequest{Prompt: "Repeat after me: " + canary})
	res, err := suite.tasks.Wait(ctx, id)
	if err != nil || res.State != task.Completed {
		t.Fatalf("task ended %+v, %v; want COMPLETED", res, err)
	}

	raw, err := client.DialContext(ctx, client.Options{HostPort: suite.Stack.TemporalAddress, Namespace: suite.Stack.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var input *commonpb.Payloads
	found, events := 0, 0
	it := raw.GetWorkflowHistory(ctx, task.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events++
		b, _ := proto.Marshal(ev)
		j, _ := protojson.Marshal(ev)
		found += bytes.Count(b, []byte(canary)) + bytes.Count(j, []byte(canary))
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			input = a.GetInput()
		}
	}
	if found != 0 {
		t.Errorf("the canary appears %d times in the raw history of %d events", found, events)
	}
	if input == nil || len(input.Payloads) == 0 {
		t.Fatal("no workflow input in the history")
	}
	if enc := string(input.Payloads[0].Metadata["encoding"]); enc != codec.Encoding {
		t.Errorf("the workflow input is encoded %q; want %q", enc, codec.Encoding)
	}

	// The codec endpoint, behind a real HTTP server, as `autoglm server`
	// mounts it.
	c, err := config.Codec()
	if err != nil || c == nil {
		t.Fatalf("config.Codec() = %v, %v; the suite sets AUTOGLM_CODEC_KEYS", c, err)
	}
	srv := httptest.NewServer(codec.Handler(codec.HandlerOptions{
		Codec: c, Namespace: suite.Stack.Namespace, Origins: []string{suite.Stack.UIURL},
		Authenticate: func(r *http.Request) (string, error) {
			if r.Header.Get("Authorization") == "Bearer bob-key" {
				return "bob", nil
			}
			return "", errors.New("unknown key")
		},
	}))
	defer srv.Close()
	body, _ := protojson.Marshal(input)
	decode := func(token, ns string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/codec/decode", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set(codec.NamespaceHeader, ns)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	// The opened input is the task's, in plain JSON: what only the codec
	// can show.
	plain := []byte(`"id":"` + id + `"`)
	if bytes.Contains(input.Payloads[0].Data, plain) {
		t.Fatalf("the raw workflow input shows %s in plain text", plain)
	}
	status, out := decode("bob-key", suite.Stack.Namespace)
	var opened commonpb.Payloads
	if status != http.StatusOK || protojson.Unmarshal([]byte(out), &opened) != nil || len(opened.Payloads) == 0 || !bytes.Contains(opened.Payloads[0].Data, plain) {
		t.Fatalf("authorized decode: %d %.200s; want the task's input opened", status, out)
	}
	for _, tc := range []struct{ name, token, ns string }{
		{"missing token", "", suite.Stack.Namespace},
		{"wrong token", "eve-key", suite.Stack.Namespace},
		{"foreign namespace", "bob-key", "finance"},
	} {
		if status, out := decode(tc.token, tc.ns); status == http.StatusOK || strings.Contains(out, id) {
			t.Errorf("%s: decode answered %d %.100s; want a refusal", tc.name, status, out)
		}
	}
}
