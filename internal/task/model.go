package task

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// MirrorWorkflowType is the registered name of the workflow that copies a
// model's files from its upstream into the bucket.
const MirrorWorkflowType = "MirrorWorkflow"

// MirrorWorkflowID is the workflow ID of the mirror of one model revision:
// a second request for the same revision joins the first instead of
// copying twice. The "@" is in neither a name nor a revision, so no two
// pairs share an ID (with "-", a@b-c and a-b@c would).
func MirrorWorkflowID(name, revision string) string { return "mirror-" + name + "@" + revision }

// Upstream kinds a model is mirrored from.
const (
	// UpstreamHF is a Hugging Face-style hub: files at
	// {base}/{repo}/resolve/{revision}/{file}, listed with their sha256 by
	// {base}/api/models/{repo}/revision/{revision}.
	UpstreamHF = "hf"
	// UpstreamHTTP is a plain HTTP folder: {base}/{repo}/{file}, listed
	// with their sha256 by {base}/{repo}/manifest.json.
	UpstreamHTTP = "http"
)

// MirrorInput starts a MirrorWorkflow.
type MirrorInput struct {
	// Name is the model's name here: models/<name>/<revision>/ in the bucket.
	Name string `json:"name"`
	// Repo is the model's path at the upstream, e.g. THUDM/glm-4-9b.
	Repo     string `json:"repo"`
	Revision string `json:"revision"`
	// Upstream is UpstreamHF (default) or UpstreamHTTP.
	Upstream string `json:"upstream,omitempty"`
	// Actor asked for the mirror, for the log.
	Actor string `json:"actor,omitempty"`
	// Commit and Files, when set, are what screening recorded: the mirror
	// downloads exactly these files at that commit and nothing else. A
	// mirror without them lists the revision and copies that listing at
	// its commit.
	Commit string      `json:"commit,omitempty"`
	Files  []ModelFile `json:"files,omitempty"`
}

var (
	modelNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	revisionPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$`)
	repoPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)
)

// Validate checks the names that become object keys and URL paths.
func (in MirrorInput) Validate() error {
	switch {
	case !modelNamePattern.MatchString(in.Name) || strings.Contains(in.Name, ".."):
		return Errorf(InvalidInput, "model name %q must match [a-z0-9][a-z0-9._-]{0,62}", in.Name)
	case !revisionPattern.MatchString(in.Revision) || strings.Contains(in.Revision, ".."):
		return Errorf(InvalidInput, "revision %q must match [A-Za-z0-9][A-Za-z0-9._-]{0,79}", in.Revision)
	case !repoPattern.MatchString(in.Repo) || strings.Contains(in.Repo, ".."):
		return Errorf(InvalidInput, "repo %q must be owner/name", in.Repo)
	case in.Upstream != "" && in.Upstream != UpstreamHF && in.Upstream != UpstreamHTTP:
		return Errorf(InvalidInput, "upstream %q must be %q or %q", in.Upstream, UpstreamHF, UpstreamHTTP)
	case in.Commit != "" && !revisionPattern.MatchString(in.Commit):
		return Errorf(InvalidInput, "commit %q must match [A-Za-z0-9][A-Za-z0-9._-]{0,79}", in.Commit)
	case len(in.Files) > 0 && in.Commit == "":
		return Errorf(InvalidInput, "a mirror of listed files needs their commit")
	}
	return nil
}

// ModelFile is one file of a model revision, as the upstream lists it.
type ModelFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// CheckModelFileName refuses file names that could leave the model's
// folder, in the bucket or in a node's cache, and the name of the record
// kept beside the files (CacheMetaName), which an upstream file must not
// overwrite.
func CheckModelFileName(name string) error {
	if name == CacheMetaName {
		return Errorf(InvalidInput, "model file name %q is reserved for the cache's record", name)
	}
	if name == "" || len(name) > 400 || strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\\\x00") {
		return Errorf(InvalidInput, "model file name %q is not a relative path", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return Errorf(InvalidInput, "model file name %q is not a clean relative path", name)
		}
	}
	return nil
}

// ModelPrefix is the folder of a mirrored model revision in the bucket.
func ModelPrefix(name, revision string) string {
	return fmt.Sprintf("models/%s/%s/", name, revision)
}

// CacheMetaName is the record a mirrored revision (in the bucket) and a
// node's cached copy (on disk) keep beside the files.
const CacheMetaName = "cache.meta"

// CacheMeta records a mirrored revision: every file with its size and
// sha256, and when it was fetched.
type CacheMeta struct {
	Name     string `json:"name"`
	Repo     string `json:"repo,omitempty"`
	Revision string `json:"revision"`
	// Commit is the upstream commit the files were copied at.
	Commit    string      `json:"commit,omitempty"`
	Files     []ModelFile `json:"files"`
	FetchedAt time.Time   `json:"fetched_at"`
	// LastUsed is kept by a node's cache only: eviction goes least
	// recently used first.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Size is the bytes of all the files.
func (m CacheMeta) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// MirrorResult is what a MirrorWorkflow returns.
type MirrorResult struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
	Files    int    `json:"files"`
	Bytes    int64  `json:"bytes"`
	// Skipped files were in the bucket already, verified.
	Skipped int `json:"skipped"`
	// Meta is the revision's cache.meta in the bucket.
	Meta ObjectRef `json:"meta"`
}
