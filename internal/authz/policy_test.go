package authz

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

func TestDefaultPolicy(t *testing.T) {
	p := Default()
	demo, err := p.Tenant("demo")
	if err != nil {
		t.Fatal(err)
	}
	if demo.Quorum != 1 || demo.ApprovalDeadline != 24*time.Hour || demo.AutoApproveMaxRequests != 10 {
		t.Errorf("demo tenant rules: %+v", demo)
	}
	if _, err := p.Tenant("nope"); !errors.Is(err, task.ErrUnknownTenant) {
		t.Errorf("unknown tenant: %v", err)
	}
	if err := demo.AllowsModel("demo", "gpt-4o"); !errors.Is(err, task.ErrModelNotAllowed) {
		t.Errorf("model outside the list: %v", err)
	}
}

// TestRoleTable pins the README's table: if the code changes, this test
// and the README change together.
func TestRoleTable(t *testing.T) {
	want := map[Role][]Action{
		Admin:     {Submit, Approve, Reject, Cancel, Pause, Resume, SetPriority, View},
		Reviewer:  {Approve, Reject, View},
		Operator:  {Cancel, Pause, Resume, SetPriority, View},
		Submitter: {Submit, View},
		Auditor:   {View},
	}
	for _, r := range Roles {
		for _, a := range Actions {
			ok := false
			for _, w := range want[r] {
				ok = ok || w == a
			}
			err := Allowed("demo", "u", []Role{r}, a, "someone-else")
			if ok != (err == nil) {
				t.Errorf("%s %s: allowed=%v, err=%v", r, a, ok, err)
			}
			if err != nil && !errors.Is(err, task.ErrPermissionDenied) {
				t.Errorf("%s %s: error type %v", r, a, task.TypeOf(err))
			}
		}
	}
}

func TestOwnTask(t *testing.T) {
	if err := Allowed("demo", "alice", []Role{Submitter}, Cancel, "alice"); err != nil {
		t.Errorf("a submitter may cancel their own task: %v", err)
	}
	for _, a := range []Action{Approve, Reject} {
		if err := Allowed("demo", "carol", []Role{Admin}, a, "carol"); !errors.Is(err, task.ErrPermissionDenied) {
			t.Errorf("an admin may not %s their own task: %v", a, err)
		}
	}
	if err := Allowed("demo", "", []Role{Admin}, View, "x"); err == nil {
		t.Error("no user must be refused")
	}
}

func TestParseRefusesUnknownRolesAndFields(t *testing.T) {
	if _, err := Parse([]byte("tenants:\n  a:\n    users: {x: [superuser]}\n")); err == nil {
		t.Error("unknown role accepted")
	}
	if _, err := Parse([]byte("tenants:\n  a:\n    quorom: 2\n")); err == nil {
		t.Error("misspelt field accepted")
	}
}

// TestSourceReloads edits the policy file and sees the change without a
// restart; a broken edit keeps the last good policy.
func TestSourceReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(s string, mod time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	write("tenants:\n  a:\n    models: [m1]\n", now)
	src, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	write("tenants:\n  a:\n    models: [m1, m2]\n  b: {}\n", now.Add(time.Second))
	p, err := src.Current()
	if err != nil || len(p.Tenants) != 2 || len(p.Tenants["a"].Models) != 2 {
		t.Fatalf("reloaded policy: %+v, %v", p, err)
	}
	write("tenants: [not a map", now.Add(2*time.Second))
	p, err = src.Current()
	if err != nil || len(p.Tenants) != 2 {
		t.Fatalf("a broken edit must keep the last good policy: %+v, %v", p, err)
	}
	if got := p.TenantsOf("nobody"); len(got) != 0 {
		t.Errorf("TenantsOf(nobody) = %v", got)
	}
}

func TestTenantsHaveADefaultModel(t *testing.T) {
	if m, err := Default().DefaultModel("demo"); err != nil || m != "glm-4-test" {
		t.Errorf("the demo tenant's default model: %q, %v", m, err)
	}
	p, err := Parse([]byte("tenants:\n  a: {models: ['*', m2, m3]}\n  b: {models: ['*']}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := p.DefaultModel("a"); err != nil || m != "m2" {
		t.Errorf("without default_model the first named model: %q, %v", m, err)
	}
	if _, err := p.DefaultModel("b"); !errors.Is(err, task.ErrInvalidInput) {
		t.Errorf("a tenant allowing any model names no default: %v", err)
	}
	if _, err := p.DefaultModel("nope"); !errors.Is(err, task.ErrUnknownTenant) {
		t.Errorf("unknown tenant: %v", err)
	}
	if _, err := Parse([]byte("tenants:\n  a: {models: [m1], default_model: m9}\n")); err == nil {
		t.Error("a default model the tenant may not use must be refused")
	}
}
