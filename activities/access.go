package activities

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// accessPrefix keeps the models an access request allowed, per tenant:
// fleet/access/<tenant>/<model>.json. Authorize reads it beside the
// tenant's own list in the policy.
const accessPrefix = "fleet/access/"

// ScreenAccessResult is the automatic screening of an access request.
type ScreenAccessResult struct {
	// Refused says why the request stops here; empty when it goes on.
	Refused string           `json:"refused,omitempty"`
	Licence string           `json:"licence"`
	Bytes   int64            `json:"bytes"`
	Files   []task.ModelFile `json:"files"`
	// No members or roles: the review's validators check the roles the
	// server signs into each decision's assertion. Results recorded with a
	// "grant" still decode; it is ignored.
	ReviewDeadline time.Duration `json:"review_deadline"`
}

// ScreenAccessRequest checks an access request against the policy's
// access rules: an allowed upstream, an allowed licence, a size in bounds.
func (m *Mirror) ScreenAccessRequest(ctx context.Context, in task.AccessRequest) (ScreenAccessResult, error) {
	res, err := m.screenAccess(ctx, in)
	return res, asApplicationError(err)
}

func (m *Mirror) screenAccess(ctx context.Context, in task.AccessRequest) (ScreenAccessResult, error) {
	var res ScreenAccessResult
	if err := in.Validate(); err != nil {
		return res, err
	}
	p, err := m.Policy.Current()
	if err != nil {
		return res, err
	}
	t, err := p.Tenant(in.Tenant)
	if err != nil {
		return res, err
	}
	if len(t.Users[in.Requester]) == 0 {
		return res, task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", in.Requester, in.Tenant)
	}
	res.ReviewDeadline = p.Access.ReviewDeadline
	if res.ReviewDeadline <= 0 {
		res.ReviewDeadline = 72 * time.Hour
	}
	rules := p.Access
	if !rules.AllowsUpstream(in.Model.Repo) {
		res.Refused = fmt.Sprintf("upstream %s is not on the allow-list %v", in.Model.Repo, rules.Upstreams)
		return res, nil
	}
	info, err := m.Upstream.Info(ctx, in.Model.Upstream, in.Model.Repo, in.Model.Revision)
	if err != nil {
		return res, err
	}
	res.Licence = info.Licence
	if !rules.AllowsLicence(info.Licence) {
		res.Refused = fmt.Sprintf("licence %q is not on the allow-list %v", info.Licence, rules.Licences)
		return res, nil
	}
	if res.Files, err = m.Upstream.List(ctx, in.Model.Upstream, in.Model.Repo, in.Model.Revision); err != nil {
		return res, err
	}
	for _, f := range res.Files {
		res.Bytes += f.Size
	}
	if rules.MaxBytes > 0 && res.Bytes > rules.MaxBytes {
		res.Refused = fmt.Sprintf("the model is %d bytes, over the limit of %d", res.Bytes, rules.MaxBytes)
	}
	return res, nil
}

// AuditInput is what the security audit looks at.
type AuditInput struct {
	Request task.AccessRequest `json:"request"`
	Files   []task.ModelFile   `json:"files"`
}

// AuditResult lists what the audit found; Refused says why it stops.
type AuditResult struct {
	Findings []string `json:"findings"`
	Refused  string   `json:"refused,omitempty"`
}

// File kinds the audit lets through by name; weights must be safetensors
// (or gguf), whose loaders run no code.
var (
	plainExts   = []string{".json", ".txt", ".md", ".model", ".tiktoken", ".py.txt", ".jinja"}
	weightExts  = []string{".safetensors", ".gguf"}
	pickledExts = []string{".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
)

// AuditModelFiles is the security audit: every file's type by name and by
// its first bytes (a safetensors header, no pickle or PyTorch zip unless
// the policy allows pickled weights), and every file's sha256 as the
// upstream's file endpoint announces it against the listing's.
func (m *Mirror) AuditModelFiles(ctx context.Context, in AuditInput) (AuditResult, error) {
	res, err := m.audit(ctx, in)
	return res, asApplicationError(err)
}

func (m *Mirror) audit(ctx context.Context, in AuditInput) (AuditResult, error) {
	var res AuditResult
	p, err := m.Policy.Current()
	if err != nil {
		return res, err
	}
	var refused []string
	for _, f := range in.Files {
		ext := strings.ToLower(path.Ext(f.Name))
		url := m.Upstream.FileURL(orHF(in.Request.Model.Upstream), in.Request.Model.Repo, in.Request.Model.Revision, f.Name)
		head, announced, err := m.Upstream.Head(ctx, url, 64)
		if err != nil {
			return res, err
		}
		if announced != "" && announced != f.SHA256 {
			refused = append(refused, fmt.Sprintf("%s: the file endpoint announces sha256 %s, the listing %s", f.Name, announced, f.SHA256))
			continue
		}
		switch kind := sniffWeights(head); {
		case kind == "pickle" || slices.Contains(pickledExts, ext):
			if p.Access.AllowPickle {
				res.Findings = append(res.Findings, f.Name+": pickled weights, allowed by the policy")
			} else {
				refused = append(refused, f.Name+": pickled weights (a pickle can run code when loaded); the policy allows safetensors only")
			}
		case ext == ".safetensors" && kind != "safetensors":
			refused = append(refused, f.Name+": named .safetensors but has no safetensors header")
		case slices.Contains(weightExts, ext) || slices.Contains(plainExts, ext):
			res.Findings = append(res.Findings, fmt.Sprintf("%s: %s, sha256 %s", f.Name, orDefault(kind, strings.TrimPrefix(ext, ".")), f.SHA256[:12]))
		default:
			refused = append(refused, f.Name+": a file type the audit does not let through")
		}
	}
	if len(refused) > 0 {
		res.Findings = append(res.Findings, refused...)
		res.Refused = strings.Join(refused, "; ")
	}
	return res, nil
}

// sniffWeights recognises weights by their first bytes: a pickle stream
// (protocol 2-5), a PyTorch zip (which holds a pickle), or safetensors (a
// little-endian header length, then a JSON object).
func sniffWeights(b []byte) string {
	switch {
	case len(b) >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5:
		return "pickle"
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return "pickle"
	case len(b) >= 9 && binary.LittleEndian.Uint64(b[:8]) < 100<<20 && b[8] == '{':
		return "safetensors"
	}
	return ""
}

func orHF(kind string) string { return orDefault(kind, task.UpstreamHF) }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// AllowModelInput records an approved access request.
type AllowModelInput struct {
	Request  task.AccessRequest `json:"request"`
	Approver string             `json:"approver"`
	Mirror   task.MirrorResult  `json:"mirror"`
}

// AllowModel makes the mirrored model usable by the tenant.
func (m *Mirror) AllowModel(ctx context.Context, in AllowModelInput) (task.ObjectRef, error) {
	key := accessPrefix + in.Request.Tenant + "/" + in.Request.Model.Name + ".json"
	b := fmt.Appendf(nil, `{"tenant":%q,"model":%q,"revision":%q,"request":%q,"approver":%q}`+"\n",
		in.Request.Tenant, in.Request.Model.Name, in.Request.Model.Revision, in.Request.ID, in.Approver)
	info, err := m.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	if err != nil {
		return task.ObjectRef{}, asApplicationError(err)
	}
	return task.ObjectRef{Bucket: m.Store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256}, nil
}

// AllowedByRequest tells whether an access request allowed the model for
// the tenant.
func AllowedByRequest(ctx context.Context, s storage.Store, tenant, model string) (bool, error) {
	if s == nil || storage.CheckID("model", model) != nil {
		return false, nil
	}
	_, err := s.Stat(ctx, accessPrefix+tenant+"/"+model+".json")
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
