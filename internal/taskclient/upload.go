package taskclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// AttachmentsDir is the folder of a task's attachments within its key
// prefix: attachments/<name>, so that an attachment called output.jsonl
// never takes the place of the task's own output.
const AttachmentsDir = "attachments/"

// AttachOptions tune Attach.
type AttachOptions struct {
	// StateDir keeps the state of interrupted uploads; "" is the user's
	// cache folder (storage.DefaultStateDir).
	StateDir string
	// Progress, if set, is asked for a progress callback for each file as
	// its upload starts (the CLI draws a bar with it); it may return nil.
	Progress func(path string, size int64) func(done, total int64)
}

// Attachment is one uploaded file.
type Attachment struct {
	Path  string                `json:"path"`
	Entry storage.ManifestEntry `json:"object"`
	// Reused parts came from an interrupted earlier upload; Existed means
	// the file was already there and nothing was sent.
	Reused  int  `json:"reused_parts,omitempty"`
	Existed bool `json:"existed,omitempty"`
}

// Attach uploads files as attachments of a task and lists them in its
// manifest, so that `autoglm results` downloads them and checks their
// sha256. Each file's category comes from its content, its name (the
// file's base name) goes through storage.SafeName, and large files go as
// resumable multipart uploads: running Attach again after an interruption
// sends only what is missing.
func (c *Client) Attach(ctx context.Context, tenant, taskID string, paths []string, o AttachOptions) ([]Attachment, error) {
	if c.Store == nil {
		return nil, errors.New("attaching files needs the bucket: set AUTOGLM_S3_*")
	}
	var names []string
	for _, p := range paths {
		name := filepath.Base(p)
		if slices.Contains(names, name) {
			return nil, task.Errorf(task.InvalidInput, "two attachments are named %s; rename one", name)
		}
		names = append(names, name)
	}
	var out []Attachment
	var entries []storage.ManifestEntry
	for _, p := range paths {
		a, err := c.attach(ctx, tenant, taskID, p, o)
		if err != nil {
			return out, err
		}
		out = append(out, a)
		entries = append(entries, a.Entry)
	}
	if _, _, err := storage.AddToManifest(ctx, c.Store, tenant, taskID, entries...); err != nil {
		return out, fmt.Errorf("listing the attachments in the manifest of task %s: %w", taskID, err)
	}
	return out, nil
}

func (c *Client) attach(ctx context.Context, tenant, taskID, path string, o AttachOptions) (Attachment, error) {
	name, err := storage.SafeName(filepath.Base(path))
	if err != nil {
		return Attachment{}, err
	}
	ct, cat, size, err := sniffFile(path)
	if err != nil {
		return Attachment{}, err
	}
	key, err := storage.Key(cat, tenant, taskID, AttachmentsDir+name)
	if err != nil {
		return Attachment{}, err
	}
	uo := storage.UploadOptions{PutOptions: storage.PutOptions{ContentType: ct}, StateDir: o.StateDir}
	if o.Progress != nil {
		uo.Progress = o.Progress(path, size)
	}
	res, err := storage.UploadFile(ctx, c.Store, key, path, uo)
	if err != nil {
		return Attachment{}, fmt.Errorf("uploading %s: %w", path, err)
	}
	e := storage.Entry(c.Store.Bucket(), res.Info)
	e.ContentType, e.Category = ct, cat
	return Attachment{Path: path, Entry: e, Reused: res.Reused, Existed: res.Existed}, nil
}

// sniffFile names the content type and category of a file from its first
// bytes.
func sniffFile(path string) (string, storage.Category, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", 0, task.Errorf(task.InvalidInput, "%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", "", 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", "", 0, task.Errorf(task.InvalidInput, "%s is not a regular file", path)
	}
	head := make([]byte, storage.SniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", "", 0, err
	}
	ct, cat := storage.Sniff(head[:n])
	return ct, cat, fi.Size(), nil
}

// Artifacts are what `autoglm results` downloads: the artifacts of the
// task's status, then whatever else its manifest lists (attachments, and
// objects added after the task ended).
func (c *Client) Artifacts(ctx context.Context, st task.Status) ([]task.ObjectRef, error) {
	out := slices.Clone(st.Artifacts)
	manifestKey, err := storage.ManifestKey(st.Tenant, st.ID)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Key == manifestKey {
			// The manifest grows as files are attached after the task
			// ended, so its digest at archive time is no check of it; the
			// digests it lists check everything else.
			out[i].SHA256 = ""
		}
	}
	if c.Store == nil {
		return out, nil
	}
	m, _, err := storage.ReadManifest(ctx, c.Store, st.Tenant, st.ID)
	if err != nil {
		return out, fmt.Errorf("reading the manifest of task %s: %w", st.ID, err)
	}
	for _, e := range m.Objects {
		if err := storage.CheckOwnKey(st.Tenant, st.ID, e.Key); err != nil {
			return out, fmt.Errorf("the manifest of task %s lists an object outside the task: %w", st.ID, err)
		}
		if !slices.ContainsFunc(out, func(r task.ObjectRef) bool { return r.Key == e.Key }) {
			out = append(out, e.Ref())
		}
	}
	return out, nil
}

// LocalPaths are where `autoglm results` puts each artifact under dir: its
// name within the task (so attachments/ keeps them apart from outputs),
// or, when two artifacts have the same name, <category>/<name>.
func LocalPaths(dir string, refs []task.ObjectRef) ([]string, error) {
	paths := make([]string, len(refs))
	seen := map[string]bool{}
	for i, r := range refs {
		name, err := storage.SafeName(storage.NameOf(r.Key))
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", r.Key, err)
		}
		if seen[name] {
			name = cmp.Or(string(storage.CategoryOf(r.Key)), "other") + "/" + name
		}
		seen[name] = true
		paths[i] = filepath.Join(dir, filepath.FromSlash(name))
	}
	return paths, nil
}
