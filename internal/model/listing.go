package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Listing is a revision resolved to its commit, with every file's size
// and sha256: what screening records and the mirror copies, nothing else.
type Listing struct {
	// Commit is the upstream's commit of the revision; for a plain HTTP
	// folder, which has none, it is the digest of the file list (see
	// ListingDigest), so a changed folder is a different commit.
	Commit string           `json:"commit"`
	Files  []task.ModelFile `json:"files"`
}

// hubRevision is the part of the hub's revision API that names the commit
// and the files: GET /api/models/{repo}/revision/{revision}?blobs=true.
type hubRevision struct {
	SHA      string `json:"sha"`
	Siblings []struct {
		RFilename string `json:"rfilename"`
		Size      int64  `json:"size"`
		LFS       *struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		} `json:"lfs"`
	} `json:"siblings"`
}

// manifest is a plain HTTP folder's list of files.
type manifest struct {
	Commit string           `json:"commit"`
	Files  []task.ModelFile `json:"files"`
}

// ParseHubRevision reads the hub's answer for a revision. The answer is
// untrusted: a commit that is not a hex digest, a file without a sha256, a
// name that could leave the model's folder or is the cache's own record, a
// negative size or a duplicate are refused.
func ParseHubRevision(b []byte) (Listing, error) {
	var r hubRevision
	if err := json.Unmarshal(b, &r); err != nil {
		return Listing{}, task.Errorf(task.ScreeningFailed, "the hub's revision answer is not JSON: %v", err)
	}
	l := Listing{Commit: r.SHA}
	for _, s := range r.Siblings {
		f := task.ModelFile{Name: s.RFilename, Size: s.Size}
		if s.LFS != nil {
			f.SHA256, f.Size = s.LFS.SHA256, s.LFS.Size
		}
		l.Files = append(l.Files, f)
	}
	if !isHex(l.Commit) || len(l.Commit) != 40 && len(l.Commit) != 64 {
		return Listing{}, task.Errorf(task.ScreeningFailed, "the hub names no commit for the revision (sha %q)", l.Commit)
	}
	return l, checkListing(l.Files)
}

// ParseManifest reads a plain HTTP folder's manifest.json, with the same
// checks as ParseHubRevision. A manifest without a commit gets its
// listing's digest.
func ParseManifest(b []byte) (Listing, error) {
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Listing{}, task.Errorf(task.ScreeningFailed, "manifest.json is not JSON: %v", err)
	}
	if err := checkListing(m.Files); err != nil {
		return Listing{}, err
	}
	l := Listing{Commit: m.Commit, Files: m.Files}
	if l.Commit == "" {
		l.Commit = ListingDigest(m.Files)
	}
	if !isHex(l.Commit) || len(l.Commit) < 40 || len(l.Commit) > 64 {
		return Listing{}, task.Errorf(task.ScreeningFailed, "manifest.json names commit %q, not a hex digest", l.Commit)
	}
	return l, nil
}

// ListingDigest is the first 40 hex digits of the sha256 of the files'
// names, sizes and sha256, sorted by name.
func ListingDigest(files []task.ModelFile) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b task.ModelFile) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	for _, f := range sorted {
		b, _ := json.Marshal(f)
		h.Write(append(b, '\n'))
	}
	return hex.EncodeToString(h.Sum(nil))[:40]
}

// checkListing refuses a listing the mirror could not copy safely.
func checkListing(files []task.ModelFile) error {
	if len(files) == 0 {
		return task.Errorf(task.ScreeningFailed, "the upstream lists no files")
	}
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := task.CheckModelFileName(f.Name); err != nil {
			return err
		}
		if seen[f.Name] {
			return task.Errorf(task.ScreeningFailed, "the upstream lists %s twice", f.Name)
		}
		seen[f.Name] = true
		if len(f.SHA256) != 64 || !isHex(f.SHA256) {
			return task.Errorf(task.ScreeningFailed, "the upstream gives no sha256 for %s; it cannot be verified", f.Name)
		}
		if f.Size < 0 {
			return task.Errorf(task.ScreeningFailed, "the upstream lists %s with size %d", f.Name, f.Size)
		}
	}
	return nil
}

// isHex tells a non-empty string of lower-case hex digits.
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
