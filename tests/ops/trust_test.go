package ops

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/config"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// A task's history holds no policy: in a tenant of seven members and a
// list of screening words, a flagged batch waits for approval; a validly
// signed approval by an auditor and one by the submitter (who is also a
// reviewer) are refused, a reviewer's is accepted, and the task completes.
// Then neither the raw history (codec off) nor the history opened with the
// codec holds the name or roles of any member who did not act, the grant's
// members or roles at all, or any of the screening words.
func TestHistoryHoldsNoPolicy(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	r := randHex(4)
	// Names and words no other part of the run could produce.
	var (
		tenantName = "trust" + r
		submitter  = "sam" + r // submitter and reviewer
		reviewer   = "rev" + r
		auditor    = "aud" + r // acts, and is refused
		silent     = map[string]authz.Role{"ann" + r: authz.Admin, "opa" + r: authz.Operator, "rex" + r: authz.Reviewer, "dot" + r: authz.Submitter}
		words      = []string{"zebrafin" + r, "quokkalid" + r, "ferretmoss" + r}
	)
	var users strings.Builder
	users.WriteString("      " + submitter + ": [submitter, reviewer]\n      " + reviewer + ": [reviewer]\n      " + auditor + ": [auditor]\n")
	for u, role := range silent {
		users.WriteString("      " + u + ": [" + string(role) + "]\n")
	}
	// The demo tenant stays as it is for the suite's other tests.
	policy := strings.Replace(string(authz.DefaultYAML()), "tenants:\n",
		"tenants:\n  "+tenantName+":\n    models: ["+model+"]\n    users:\n"+users.String()+"    auto_approve_max_requests: 10\n", 1)
	policy = strings.Replace(policy, "sensitive_words: [password, secret key, ssn]", "sensitive_words: ["+strings.Join(words, ", ")+"]", 1)
	p, err := authz.Parse([]byte(policy))
	if err != nil || len(p.Tenants[tenantName].Users) != 7 || len(p.Screening.SensitiveWords) != 3 {
		t.Fatalf("the test's policy: %v (%d members, words %v)", err, len(p.Tenants[tenantName].Users), p.Screening.SensitiveWords)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	// The worker and the break-glass signer (suite.tasks has no policy of
	// its own) both read it.
	t.Setenv("AUTOGLM_POLICY_FILE", path)
	startWorker(t)

	// Three requests are under the auto-approve limit: only the word on
	// the second line makes the task wait for a reviewer.
	in := batchFile(t, 3, "hello")
	b, _ := os.ReadFile(in)
	lines := strings.SplitN(string(b), "\n", 3)
	lines[1] = strings.Replace(lines[1], "hello 1", "tell me about the "+words[1], 1)
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	id := "trust-" + r
	if _, err := suite.tasks.Submit(ctx, taskclient.SubmitRequest{ID: id, Tenant: tenantName, Submitter: submitter, Model: model, File: in}); err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitState(t, ctx, id, task.AwaitingApproval)
	st, err := suite.tasks.Status(ctx, id)
	if err != nil || !strings.Contains(strings.Join(st.Screening.Reasons, "; "), "line 2 mentions a word on the screening list") {
		t.Fatalf("screening reasons %q (%v); want line 2 flagged by the policy's words", st.Screening.Reasons, err)
	}

	// Each assertion is signed with the actor's roles in the tenant, as
	// the policy has them: valid signatures, refused by the role table.
	for _, c := range []struct{ who, why string }{
		{auditor, "an auditor may not approve"},
		{submitter, "nobody approves their own task, reviewer or not"},
	} {
		_, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: c.who, Reason: "looks fine"})
		if errType(err) != string(task.PermissionDenied) {
			t.Errorf("%s approved (%v): %s", c.who, err, c.why)
		}
	}
	if _, err := suite.tasks.Decide(ctx, id, task.UpdateApprove, task.DecisionRequest{Actor: reviewer, Reason: "reviewed"}); err != nil {
		t.Fatalf("the reviewer's approval: %v", err)
	}
	res, err := suite.tasks.Wait(ctx, id)
	if err != nil || res.State != task.Completed {
		t.Fatalf("task ended %+v, %v; want COMPLETED", res.State, err)
	}
	if st, err := suite.tasks.Status(ctx, id); err != nil || len(st.Approvals) != 1 || st.Approvals[0].Actor != reviewer {
		t.Fatalf("approvals %+v (%v); want the reviewer's only", st.Approvals, err)
	}

	raw, opened := history(t, ctx, id)
	forbidden := append([]string{`"members"`, `"roles"`, `"grant"`, `"sensitive_words"`, auditor}, words...)
	for u, role := range silent {
		forbidden = append(forbidden, u, `"`+string(role)+`"`)
	}
	// A role as a value, not the JSON key of the same name ("submitter":
	// is the task's field).
	count := func(b []byte, f string) int {
		n := bytes.Count(b, []byte(f))
		if strings.HasPrefix(f, `"`) {
			n -= bytes.Count(b, []byte(f+":"))
		}
		return n
	}
	for _, f := range forbidden {
		if n := count(raw, f); n > 0 {
			t.Errorf("the raw history holds %s %d times", f, n)
		}
		if n := count(opened, f); n > 0 {
			t.Errorf("the history opened with the codec holds %s %d times", f, n)
		}
	}
	// The checks above can fail: the opened history shows what the raw one
	// hides, the actors among it.
	for _, want := range []string{submitter, reviewer, id} {
		if !bytes.Contains(opened, []byte(want)) {
			t.Errorf("the opened history does not hold %q; the codec did not open it", want)
		}
	}
}

// history is the task's history as a client without the codec reads it
// (every event, marshalled), and the same opened with the suite's codec.
// With AUTOGLM_RECORD_HISTORIES set, the opened history is saved there as
// task_trust_approved.json for the replay tests.
func history(t *testing.T, ctx context.Context, id string) (raw, opened []byte) {
	t.Helper()
	c, err := config.Codec()
	if err != nil || c == nil {
		t.Fatalf("config.Codec() = %v, %v; the suite sets AUTOGLM_CODEC_KEYS", c, err)
	}
	plain, err := client.DialContext(ctx, client.Options{HostPort: suite.Stack.TemporalAddress, Namespace: suite.Stack.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	var events []*historypb.HistoryEvent
	it := plain.GetWorkflowHistory(ctx, task.WorkflowID(id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := proto.Marshal(ev)
		j, _ := protojson.Marshal(ev)
		raw = append(append(raw, b...), j...)
		err = proxy.VisitPayloads(ctx, ev, proxy.VisitPayloadsOptions{
			Visitor: func(_ *proxy.VisitPayloadsContext, p []*commonpb.Payload) ([]*commonpb.Payload, error) {
				return c.Decode(p)
			},
		})
		if err != nil {
			t.Fatalf("opening event %d: %v", ev.GetEventId(), err)
		}
		// The payloads' data as bytes: protojson would show it in base64.
		b, _ = proto.Marshal(ev)
		opened = append(opened, b...)
		events = append(events, ev)
	}
	if len(events) == 0 {
		t.Fatal("no history")
	}
	if dir := os.Getenv("AUTOGLM_RECORD_HISTORIES"); dir != "" {
		j, err := protojson.Marshal(&historypb.History{Events: events})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "task_trust_approved.json"), j, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return raw, opened
}

// errType is the stable type of a refused update: the application error's
// the validator returned.
func errType(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return string(task.TypeOf(err))
}
