// Package testhub is a stand-in for a Hugging Face-style model hub, for
// tests and benchmarks: it serves {base}/{repo}/resolve/{revision}/{file}
// with Range support, lists a revision's files with their sha256 at
// {base}/api/models/{repo}/revision/{revision} as the hub does, resolving
// the revision to a commit that keeps serving the files it listed, also
// serves them as a plain HTTP folder with a manifest.json, asks for a
// token when given one, and misbehaves on demand: broken streams, flipped
// bytes, and bodies other than the listed file.
package testhub

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Hub is the test hub.
type Hub struct {
	// Token, if set, must come as Authorization: Bearer.
	Token string

	srv   *httptest.Server
	mu    sync.Mutex
	files map[string][]byte // repo@revision/file
	lic   map[string]string // repo → licence
	cuts  map[string][]int64
	bad   map[string]int // file → how many next answers have a flipped byte
	// instead: file → the body served in place of the listed content.
	instead map[string]body
	// commits: a commit a listing named → the files it listed then.
	commits map[string]commit
	log     []Request
}

// body is a hostile answer: content, and whether its end comes on a
// read of its own (a chunked body without Content-Length).
type body struct {
	content  []byte
	eofApart bool
}

// commit is a snapshot of a revision's files when a listing named it.
type commit struct {
	repo, revision string
	files          map[string][]byte
}

// Request is one file request the hub answered.
type Request struct {
	File   string // repo@revision/file
	Offset int64  // from the Range header; 0 without one
	Sent   int64  // bytes of body sent
}

// New starts a hub on a free loopback port.
func New(token string) *Hub {
	h := &Hub{
		Token: token, files: map[string][]byte{}, cuts: map[string][]int64{}, bad: map[string]int{}, lic: map[string]string{},
		instead: map[string]body{}, commits: map[string]commit{},
	}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	return h
}

// URL is the hub's base, what HF_ENDPOINT would hold.
func (h *Hub) URL() string { return h.srv.URL }

// Close stops the hub.
func (h *Hub) Close() { h.srv.Close() }

// Add puts a file in a repo's revision and returns its sha256.
func (h *Hub) Add(repo, revision, file string, content []byte) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files[repo+"@"+revision+"/"+file] = content
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// SetLicence sets the licence a repo's model card declares.
func (h *Hub) SetLicence(repo, licence string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lic[repo] = licence
}

func (h *Hub) licence(repo string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lic[repo]
}

// Fixture is size bytes of seeded pseudo-random content: a model file
// that compresses as badly as real weights, made by the test, not
// committed.
func Fixture(seed uint64, size int) []byte {
	b := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	_, _ = r.Read(b)
	return b
}

// CutAfter makes the next len(after) requests for the file break their
// connection after sending after[i] bytes of body.
func (h *Hub) CutAfter(repo, revision, file string, after ...int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := repo + "@" + revision + "/" + file
	h.cuts[k] = append(h.cuts[k], after...)
}

// CorruptNext makes the next n answers for the file carry one flipped
// byte, as a broken proxy or disk would.
func (h *Hub) CorruptNext(repo, revision, file string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bad[repo+"@"+revision+"/"+file] += n
}

// ServeInstead makes every later answer for the file carry content in
// place of what the listing describes, as a hostile or compromised
// upstream would. With eofApart the body goes chunked, without a
// Content-Length, so a reader sees its end on a read of its own.
func (h *Hub) ServeInstead(repo, revision, file string, content []byte, eofApart bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.instead[repo+"@"+revision+"/"+file] = body{content: content, eofApart: eofApart}
}

// Requests are the file requests answered so far, in order.
func (h *Hub) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.log...)
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request) {
	if h.Token != "" && r.Header.Get("Authorization") != "Bearer "+h.Token {
		http.Error(w, "401: a token is required", http.StatusUnauthorized)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	if rest, ok := strings.CutPrefix(path, "api/models/"); ok {
		h.serveRevision(w, rest)
		return
	}
	if repo, file, ok := strings.Cut(path, "/resolve/"); ok {
		rev, name, _ := strings.Cut(file, "/")
		h.serveFile(w, r, repo, rev, name)
		return
	}
	// A plain HTTP folder: {repo}/{file} of the revision "main".
	parts := strings.SplitN(path, "/", 3)
	if len(parts) == 3 {
		repo := parts[0] + "/" + parts[1]
		if parts[2] == "manifest.json" {
			h.serveManifest(w, repo)
			return
		}
		h.serveFile(w, r, repo, "main", parts[2])
		return
	}
	http.NotFound(w, r)
}

type sibling struct {
	RFilename string `json:"rfilename"`
	Size      int64  `json:"size"`
	LFS       struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"lfs"`
}

// snapshot is the files of repo at rev, a branch or a commit a listing
// named, by file name; the key its requests are logged under; and the
// revision's commit.
func (h *Hub) snapshot(repo, rev string) (files map[string][]byte, revision, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.commits[rev]; ok && c.repo == repo {
		return c.files, c.revision, rev
	}
	files = map[string][]byte{}
	for k, b := range h.files {
		if name, ok := strings.CutPrefix(k, repo+"@"+rev+"/"); ok {
			files[name] = b
		}
	}
	if len(files) == 0 {
		return nil, rev, ""
	}
	id = commitID(files)
	h.commits[id] = commit{repo: repo, revision: rev, files: files}
	return files, rev, id
}

// commitID is a 40-hex-digit digest of the files, as a git commit's id
// looks: any change to them makes another.
func commitID(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	d := sha256.New()
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintf(d, "%s %x\n", n, sum)
	}
	return hex.EncodeToString(d.Sum(nil))[:40]
}

func siblingsOf(files map[string][]byte) []sibling {
	var out []sibling
	for name, b := range files {
		sum := sha256.Sum256(b)
		s := sibling{RFilename: name, Size: int64(len(b))}
		s.LFS.SHA256, s.LFS.Size = hex.EncodeToString(sum[:]), int64(len(b))
		out = append(out, s)
	}
	return out
}

// serveRevision answers /api/models/{owner}/{name}/revision/{revision}.
func (h *Hub) serveRevision(w http.ResponseWriter, rest string) {
	repo, rev, ok := strings.Cut(rest, "/revision/")
	files, _, id := h.snapshot(repo, rev)
	if !ok || len(files) == 0 {
		http.Error(w, `{"error":"Repository not found"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": repo, "sha": id, "siblings": siblingsOf(files), "cardData": map[string]string{"license": h.licence(repo)}})
}

func (h *Hub) serveManifest(w http.ResponseWriter, repo string) {
	var files []map[string]any
	snap, _, _ := h.snapshot(repo, "main")
	for _, s := range siblingsOf(snap) {
		files = append(files, map[string]any{"name": s.RFilename, "size": s.Size, "sha256": s.LFS.SHA256})
	}
	if len(files) == 0 {
		http.NotFound(w, nil)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"files": files, "license": h.licence(repo)})
}

// serveFile answers a file of repo at rev (a branch or a commit). Faults
// and the log are keyed by the branch, whichever way it was named.
func (h *Hub) serveFile(w http.ResponseWriter, r *http.Request, repo, rev, name string) {
	files, branch, _ := h.snapshot(repo, rev)
	b, ok := files[name]
	key := repo + "@" + branch + "/" + name
	h.mu.Lock()
	cut := int64(-1)
	if c := h.cuts[key]; len(c) > 0 {
		cut, h.cuts[key] = c[0], c[1:]
	}
	corrupt := h.bad[key] > 0
	if corrupt {
		h.bad[key]--
	}
	hostile, instead := h.instead[key]
	h.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if instead {
		h.serveInstead(w, key, hostile)
		return
	}
	sum := sha256.Sum256(b)
	total := len(b)
	var offset int64
	if rg := r.Header.Get("Range"); rg != "" {
		v, ok := strings.CutPrefix(rg, "bytes=")
		start, end, _ := strings.Cut(v, "-")
		n, err := strconv.ParseInt(start, 10, 64)
		last, lerr := strconv.ParseInt(end, 10, 64)
		if !ok || err != nil || (end != "" && (lerr != nil || last < n)) {
			http.Error(w, "only bytes=N- and bytes=N-M ranges", http.StatusBadRequest)
			return
		}
		if end != "" && last+1 < int64(len(b)) {
			b = b[:last+1]
		}
		if n >= int64(len(b)) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(b)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		offset = n
	}
	w.Header().Set("X-Linked-Etag", `"`+hex.EncodeToString(sum[:])+`"`)
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)-int(offset)))
	if offset > 0 || len(b) < total {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, len(b)-1, total))
		w.WriteHeader(http.StatusPartialContent)
	}
	body := b[offset:]
	if corrupt && len(body) > 0 {
		body = append([]byte(nil), body...)
		body[len(body)/2] ^= 0xff
	}
	if cut >= 0 && cut < int64(len(body)) {
		body = body[:cut]
	}
	// Logged before the write: a client that has read every byte may look
	// at the log before this handler gets to run again.
	h.mu.Lock()
	h.log = append(h.log, Request{File: key, Offset: offset, Sent: int64(len(body))})
	h.mu.Unlock()
	_, _ = w.Write(body)
	if cut >= 0 {
		// A broken stream: the client sees fewer bytes than Content-Length.
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
}

// serveInstead sends a hostile body whole, ignoring any range.
func (h *Hub) serveInstead(w http.ResponseWriter, key string, b body) {
	h.mu.Lock()
	h.log = append(h.log, Request{File: key, Sent: int64(len(b.content))})
	h.mu.Unlock()
	if !b.eofApart {
		w.Header().Set("Content-Length", strconv.Itoa(len(b.content)))
		_, _ = w.Write(b.content)
		return
	}
	f, _ := w.(http.Flusher)
	for rest := b.content; len(rest) > 0; {
		n := min(len(rest), 32<<10)
		_, _ = w.Write(rest[:n])
		rest = rest[n:]
		if f != nil {
			f.Flush()
		}
	}
}
