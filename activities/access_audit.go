package activities

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// AuditInput is what the security audit looks at: the files screening
// recorded, at the commit it resolved (empty in histories recorded before
// screening resolved one: the requested revision then).
type AuditInput struct {
	Request task.AccessRequest `json:"request"`
	Files   []task.ModelFile   `json:"files"`
	Commit  string             `json:"commit,omitempty"`
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
// upstream's file endpoint reports it, against the listing's.
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
		url := m.Upstream.FileURL(orHF(in.Request.Model.Upstream), in.Request.Model.Repo, orDefault(in.Commit, in.Request.Model.Revision), f.Name)
		head, reported, err := m.Upstream.Head(ctx, url, 64)
		if err != nil {
			return res, err
		}
		if reported != "" && reported != f.SHA256 {
			refused = append(refused, fmt.Sprintf("%s: the file endpoint reports sha256 %s, the listing %s", f.Name, reported, f.SHA256))
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
