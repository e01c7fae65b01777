package trainer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// ErrFenced means another attempt of the same fine-tuning job has taken
// the checkpoint head: this attempt is stale and commits nothing.
var ErrFenced = errors.New("trainer: another attempt has taken over this fine-tuning job")

// CorruptCheckpointError is a stored checkpoint whose files no longer
// match its manifest, or are gone.
type CorruptCheckpointError struct {
	Step int
	Why  string
}

func (e *CorruptCheckpointError) Error() string {
	return fmt.Sprintf("trainer: the checkpoint at step %d is unusable: %s", e.Step, e.Why)
}

// Record is a committed checkpoint: what a later attempt resumes from. Its
// record in the bucket (training/records/<seq>.json) is created once; the
// head holds a copy of the newest.
type Record struct {
	Seq   int       `json:"seq"`
	Time  time.Time `json:"time"`
	Step  int       `json:"step"`
	Epoch float64   `json:"epoch"`
	Loss  float64   `json:"loss"`
	// Final marks the trained model, not a checkpoint.
	Final bool `json:"final,omitempty"`
	// Attempt is the attempt that uploaded it.
	Attempt string `json:"attempt"`
	// Manifest is the checkpoint's manifest: size and sha256 of every file.
	Manifest     task.ObjectRef `json:"manifest"`
	ConfigDigest string         `json:"config_digest"`
}

// CheckpointManifest lists the files of one checkpoint, with the entries
// of a task's manifest (storage.ManifestEntry). Name is the file's path in
// the checkpoint folder.
type CheckpointManifest struct {
	Step  int                     `json:"step"`
	Final bool                    `json:"final,omitempty"`
	Files []storage.ManifestEntry `json:"files"`
}

// head is training/head.json: the newest record, and the attempt that
// holds the head.
type head struct {
	Seq    int     `json:"seq"`
	Holder string  `json:"holder"`
	Record *Record `json:"record,omitempty"`
}

// Checkpoints are one fine-tuning job's checkpoints in the bucket, as one
// attempt sees them.
//
// Keys, under the job's checkpoint folder: training/<attempt>-<step>/<file>
// for the files of a checkpoint (training/<attempt>-final/ for the model),
// training/<attempt>-<step>.manifest.json for its manifest,
// training/records/<seq>.json for the record, training/head.json for the
// head. Each attempt uploads under its own names, so what a stale attempt
// writes is named by no record.
//
// Fencing is the batch engine's (a head moved by If-Match before a record
// created once), through storage.Head and storage.CreateRecord, in the
// order that lets a stale attempt commit nothing: Claim rewrites the head,
// so every older attempt's next move fails; Commit moves the head first
// and creates the record only after.
type Checkpoints struct {
	Store   storage.Store
	Tenant  string
	TaskID  string
	Attempt string
	// MaxKeep is how many checkpoints stay in the bucket (default 2);
	// the final model is kept besides.
	MaxKeep int
	// Parallel is how many files upload at once (default 4).
	Parallel int

	head *storage.Head
	cur  head
	// kept are the folder names of the committed checkpoints kept, oldest
	// first.
	kept []string
}

func (c *Checkpoints) prefix() string {
	return storage.TaskPrefix(storage.Checkpoint, c.Tenant, c.TaskID) + "training/"
}

func (c *Checkpoints) maxKeep() int {
	if c.MaxKeep <= 0 {
		return defaultMaxKeep
	}
	return c.MaxKeep
}

// folder is the name of a checkpoint's folder of files in the bucket.
func (c *Checkpoints) folder(step int, final bool) string {
	if final {
		return c.Attempt + "-final"
	}
	return fmt.Sprintf("%s-%08d", c.Attempt, step)
}

// Claim takes the head for this attempt and returns the newest committed
// record (nil when there is none). Taking the head rewrites it, so an
// older attempt that wakes up finds it moved and commits nothing. Objects
// no kept record names (partial uploads of attempts that died or were
// replaced) are deleted.
func (c *Checkpoints) Claim(ctx context.Context) (*Record, error) {
	if _, err := storage.Key(storage.Checkpoint, c.Tenant, c.TaskID, "training/head.json"); err != nil {
		return nil, err
	}
	if strings.ContainsAny(c.Attempt, "/-") || c.Attempt == "" {
		return nil, fmt.Errorf("trainer: attempt name %q must be non-empty, without / or -", c.Attempt)
	}
	c.head = &storage.Head{Store: c.Store, Key: c.prefix() + "head.json"}
	if _, err := c.head.Read(ctx, &c.cur); err != nil {
		return nil, fmt.Errorf("trainer: reading the checkpoint head: %w", err)
	}
	c.cur.Holder = c.Attempt
	if err := c.head.Move(ctx, c.cur); err != nil {
		return nil, c.fenced(err)
	}
	if rec := c.cur.Record; rec != nil {
		// The holder that moved the head may have died before it created
		// the record.
		if err := c.createRecord(ctx, *rec); err != nil {
			return nil, err
		}
	}
	recs, err := c.Records(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if !r.Final {
			c.kept = append(c.kept, c.folderOf(r))
		}
	}
	if n := len(c.kept); n > c.maxKeep() {
		c.kept = c.kept[n-c.maxKeep():]
	}
	keep := slices.Clone(c.kept)
	for _, r := range recs {
		if r.Final {
			keep = append(keep, c.folderOf(r))
		}
	}
	if err := c.deleteExcept(ctx, keep); err != nil {
		return nil, err
	}
	return c.cur.Record, nil
}

// folderOf is the folder name of a record's files, from its manifest key.
func (c *Checkpoints) folderOf(r Record) string {
	return strings.TrimSuffix(strings.TrimPrefix(r.Manifest.Key, c.prefix()), ".manifest.json")
}

func (c *Checkpoints) fenced(err error) error {
	if errors.Is(err, storage.ErrConflict) {
		return fmt.Errorf("%w (attempt %s)", ErrFenced, c.Attempt)
	}
	return fmt.Errorf("trainer: moving the checkpoint head: %w", err)
}

func (c *Checkpoints) recordKey(seq int) string {
	return fmt.Sprintf("%srecords/%06d.json", c.prefix(), seq)
}

func (c *Checkpoints) createRecord(ctx context.Context, r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := storage.CreateRecord(ctx, c.Store, c.recordKey(r.Seq), b); err != nil {
		return fmt.Errorf("trainer: recording checkpoint %d: %w", r.Seq, err)
	}
	return nil
}

// Records are the committed records, oldest first.
func (c *Checkpoints) Records(ctx context.Context) ([]Record, error) {
	infos, err := c.Store.List(ctx, c.prefix()+"records/")
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, in := range infos {
		var r Record
		if err := getJSON(ctx, c.Store, in.Key, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// deleteExcept deletes every checkpoint folder and manifest under the
// job's training folder whose folder name is not in keep.
func (c *Checkpoints) deleteExcept(ctx context.Context, keep []string) error {
	infos, err := c.Store.List(ctx, c.prefix())
	if err != nil {
		return err
	}
	for _, in := range infos {
		name := strings.TrimPrefix(in.Key, c.prefix())
		folder, _, _ := strings.Cut(name, "/")
		folder = strings.TrimSuffix(folder, ".manifest.json")
		if folder == "records" || folder == "head.json" || slices.Contains(keep, folder) {
			continue
		}
		if err := c.Store.Delete(ctx, in.Key); err != nil {
			return fmt.Errorf("trainer: deleting %s: %w", in.Key, err)
		}
	}
	return nil
}

// Fenced tells why an upload of this attempt failed: it is ErrFenced when
// another attempt has taken the head (and may have deleted this attempt's
// objects as orphans), and err otherwise.
func (c *Checkpoints) Fenced(ctx context.Context, err error) error {
	if held, herr := c.head.Held(ctx); herr == nil && !held {
		return fmt.Errorf("%w (attempt %s): %v", ErrFenced, c.Attempt, err)
	}
	return err
}

// Upload stores every file of the checkpoint folder dir under this
// attempt's keys, checks what the store holds against each file's size and
// sha256, and writes the manifest. It returns the manifest's reference.
func (c *Checkpoints) Upload(ctx context.Context, dir string, step int, final bool) (task.ObjectRef, error) {
	ref, _, err := c.upload(ctx, dir, step, final)
	return ref, err
}

// upload is Upload, which also returns the bytes of the files uploaded.
func (c *Checkpoints) upload(ctx context.Context, dir string, step int, final bool) (task.ObjectRef, int64, error) {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return task.ObjectRef{}, 0, fmt.Errorf("trainer: listing %s: %w", dir, err)
	}
	slices.Sort(names)
	folder := c.prefix() + c.folder(step, final) + "/"
	entries := make([]storage.ManifestEntry, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, cmp.Or(max(c.Parallel, 0), 4))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			entries[i], errs[i] = c.uploadFile(ctx, filepath.Join(dir, filepath.FromSlash(name)), folder+url.PathEscape(name))
			entries[i].Name = name
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return task.ObjectRef{}, 0, err
	}
	b, err := json.MarshalIndent(CheckpointManifest{Step: step, Final: final, Files: entries}, "", "  ")
	if err != nil {
		return task.ObjectRef{}, 0, err
	}
	key := c.prefix() + c.folder(step, final) + ".manifest.json"
	info, err := c.Store.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	if err != nil {
		return task.ObjectRef{}, 0, fmt.Errorf("trainer: writing the manifest of step %d: %w", step, err)
	}
	var total int64
	for _, e := range entries {
		total += e.Size
	}
	return task.ObjectRef{Bucket: c.Store.Bucket(), Key: key, Size: info.Size, SHA256: info.SHA256, Category: string(storage.Checkpoint)}, total, nil
}

// uploadPartSize is the part size of a checkpoint file's upload: parts of
// 5 MiB (the storage default, to hold little in memory) made uploads to
// MinIO about 15 % slower than 16 MiB parts, the size minio-go's own
// PutObject sends (trainbench). The memory it costs is bounded: Parallel
// files, each with three parts of this size in memory.
const uploadPartSize = 16 << 20

// uploadFile puts one file and checks the stored object: its size, and
// its sha256 where the store keeps one, against what was read.
func (c *Checkpoints) uploadFile(ctx context.Context, path, key string) (storage.ManifestEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return storage.ManifestEntry{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return storage.ManifestEntry{}, err
	}
	info, err := c.Store.Put(ctx, key, f, st.Size(), storage.PutOptions{ContentType: "application/octet-stream", PartSize: uploadPartSize})
	if err != nil {
		return storage.ManifestEntry{}, fmt.Errorf("trainer: uploading %s: %w", path, err)
	}
	stored, err := c.Store.Stat(ctx, key)
	if err != nil {
		return storage.ManifestEntry{}, fmt.Errorf("trainer: checking %s: %w", key, err)
	}
	if stored.Size != st.Size() || info.Size != st.Size() || (stored.SHA256 != "" && stored.SHA256 != info.SHA256) {
		return storage.ManifestEntry{}, fmt.Errorf("trainer: %s holds %d bytes (sha256 %s), not the %d bytes sent (sha256 %s)", key, stored.Size, stored.SHA256, st.Size(), info.SHA256)
	}
	return storage.Entry(c.Store.Bucket(), info), nil
}

// Commit makes rec (its Manifest uploaded) the newest checkpoint: the head
// moves first, by If-Match, so a stale attempt fails there having
// committed nothing; then the record is created. Checkpoint files beyond
// MaxKeep are deleted after.
func (c *Checkpoints) Commit(ctx context.Context, rec Record) (Record, error) {
	rec.Seq = c.cur.Seq + 1
	rec.Attempt = c.Attempt
	rec.Time = time.Now().UTC()
	next := head{Seq: rec.Seq, Holder: c.Attempt, Record: &rec}
	if err := c.head.Move(ctx, next); err != nil {
		return rec, c.fenced(err)
	}
	c.cur = next
	if err := c.createRecord(ctx, rec); err != nil {
		return rec, err
	}
	if rec.Final {
		return rec, nil
	}
	c.kept = append(c.kept, c.folder(rec.Step, false))
	var drop []string
	if n := len(c.kept); n > c.maxKeep() {
		drop, c.kept = c.kept[:n-c.maxKeep()], c.kept[n-c.maxKeep():]
	}
	for _, folder := range drop {
		if err := c.deleteFolder(ctx, folder); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// deleteFolder deletes one checkpoint's files, then its manifest.
func (c *Checkpoints) deleteFolder(ctx context.Context, folder string) error {
	infos, err := c.Store.List(ctx, c.prefix()+folder+"/")
	if err != nil {
		return err
	}
	for _, in := range append(infos, storage.Info{Key: c.prefix() + folder + ".manifest.json"}) {
		if err := c.Store.Delete(ctx, in.Key); err != nil {
			return fmt.Errorf("trainer: deleting %s: %w", in.Key, err)
		}
	}
	return nil
}
