package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// ManifestName is the name of a task's manifest, in its data folder.
const ManifestName = "manifest.json"

// Manifest is manifest.json: every durable object of a task (its input,
// outputs, attachments and report) with what a reader needs to trust a
// download. Logs and checkpoints are not listed: lifecycle rules expire
// them, and a manifest must not promise what is gone.
type Manifest struct {
	TaskID  string          `json:"task_id"`
	Tenant  string          `json:"tenant"`
	Updated time.Time       `json:"updated"`
	Objects []ManifestEntry `json:"objects"` // sorted by key
}

// ManifestEntry is one object of a manifest. Its JSON keeps the field names
// of task.ObjectRef, so a reader that only wants keys and digests can decode
// it as one.
type ManifestEntry struct {
	// Name is the object's name within the task's folder, e.g.
	// "output.jsonl" or "attachments/spec.pdf".
	Name        string   `json:"name"`
	Bucket      string   `json:"bucket"`
	Key         string   `json:"key"`
	Size        int64    `json:"size"`
	SHA256      string   `json:"sha256"`
	ContentType string   `json:"content_type"`
	Category    Category `json:"category"`
	// VersionID is the version the entry describes; empty in an
	// unversioned bucket.
	VersionID string `json:"version_id,omitempty"`
}

// Ref is the entry as a task.ObjectRef, what workflows and the CLI pass.
func (e ManifestEntry) Ref() task.ObjectRef {
	return task.ObjectRef{Bucket: e.Bucket, Key: e.Key, Size: e.Size, SHA256: e.SHA256, Category: string(e.Category)}
}

// Entry describes what a write returned as a manifest entry.
func Entry(bucket string, info Info) ManifestEntry {
	return ManifestEntry{
		Name: NameOf(info.Key), Bucket: bucket, Key: info.Key, Size: info.Size, SHA256: info.SHA256,
		ContentType: info.ContentType, Category: CategoryOf(info.Key), VersionID: info.VersionID,
	}
}

// Describe makes the manifest entry of an object already in s from its
// Stat. sha256 is the digest its writer returned, for an object that does
// not carry its own (a streamed multipart write, see MetaSHA256); one that
// does is described by its own, computed from the bytes stored.
func Describe(ctx context.Context, s Store, key, sha256 string) (ManifestEntry, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return ManifestEntry{}, err
	}
	if info.SHA256 == "" {
		info.SHA256 = sha256
	}
	return Entry(s.Bucket(), info), nil
}

// NameOf is the name of key within its task's folder: what follows
// <category>/<hash>/<tenant>/<task>/. A key outside the layout is its own
// name.
func NameOf(key string) string {
	parts := strings.SplitN(key, "/", 5)
	if len(parts) < 5 {
		return key
	}
	return parts[4]
}

// CategoryOf is the category folder of key, or "" outside the layout.
func CategoryOf(key string) Category {
	c, _, _ := strings.Cut(key, "/")
	if Category(c).Valid() {
		return Category(c)
	}
	return ""
}

// ManifestKey is the key of a task's manifest.
func ManifestKey(tenant, taskID string) (string, error) {
	return Key(Data, tenant, taskID, ManifestName)
}

// ReadManifest reads a task's manifest and the Info (ETag) it was read at.
// A task without one has an empty manifest and a zero Info.
func ReadManifest(ctx context.Context, s Store, tenant, taskID string) (Manifest, Info, error) {
	key, err := ManifestKey(tenant, taskID)
	if err != nil {
		return Manifest{}, Info{}, err
	}
	m := Manifest{TaskID: taskID, Tenant: tenant}
	rc, info, err := s.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return m, Info{}, nil
	}
	if err != nil {
		return Manifest{}, Info{}, err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, maxManifestBytes)).Decode(&m); err != nil {
		return Manifest{}, Info{}, fmt.Errorf("storage: reading %s: %w", key, err)
	}
	return m, info, nil
}

// maxManifestBytes bounds what ReadManifest decodes (about 40,000 entries).
const maxManifestBytes = 16 << 20

// maxManifestTries bounds how often UpdateManifest re-reads after losing a
// race. Each round has one winner, so n concurrent writers need at most n
// rounds; this leaves room for many more.
const maxManifestTries = 64

// UpdateManifest applies change to a task's manifest and writes it back
// conditionally: Create when there is none (If-None-Match: *), Replace on
// the ETag it read (If-Match) otherwise. A lost race re-reads the manifest
// and applies change again to what the winner wrote, so concurrent writers
// never lose each other's entries. change must be a function of the
// manifest it is given (it may run several times).
func UpdateManifest(ctx context.Context, s Store, tenant, taskID string, change func(*Manifest) error) (Manifest, Info, error) {
	key, err := ManifestKey(tenant, taskID)
	if err != nil {
		return Manifest{}, Info{}, err
	}
	for try := 1; ; try++ {
		m, cur, err := ReadManifest(ctx, s, tenant, taskID)
		if err != nil {
			return Manifest{}, Info{}, err
		}
		if err := change(&m); err != nil {
			return Manifest{}, Info{}, err
		}
		m.TaskID, m.Tenant, m.Updated = taskID, tenant, time.Now().UTC()
		for i := range m.Objects {
			if m.Objects[i].Name == "" {
				m.Objects[i].Name = NameOf(m.Objects[i].Key)
			}
		}
		slices.SortFunc(m.Objects, func(a, b ManifestEntry) int { return strings.Compare(a.Key, b.Key) })
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return Manifest{}, Info{}, err
		}
		o := PutOptions{ContentType: "application/json"}
		var info Info
		if cur.ETag == "" {
			info, err = s.Create(ctx, key, bytes.NewReader(b), int64(len(b)), o)
		} else {
			info, err = s.Replace(ctx, key, cur.ETag, bytes.NewReader(b), int64(len(b)), o)
		}
		if err == nil {
			return m, info, nil
		}
		if !errors.Is(err, ErrConflict) || try == maxManifestTries {
			return Manifest{}, Info{}, fmt.Errorf("storage: updating the manifest of task %s (try %d): %w", taskID, try, err)
		}
		// Jitter, so that the losers of a round do not meet again at once.
		select {
		case <-ctx.Done():
			return Manifest{}, Info{}, ctx.Err()
		case <-time.After(time.Duration(rand.IntN(10*min(try, 5))+1) * time.Millisecond):
		}
	}
}

// AddToManifest records entries in a task's manifest (see UpdateManifest).
// An entry replaces the one of the same key; all others are kept.
func AddToManifest(ctx context.Context, s Store, tenant, taskID string, entries ...ManifestEntry) (Manifest, Info, error) {
	return UpdateManifest(ctx, s, tenant, taskID, func(m *Manifest) error {
		for _, e := range entries {
			if e.Key == "" {
				continue
			}
			// A manifest is what `results` downloads: an entry pointing
			// outside the task would hand out another task's objects.
			if err := CheckOwnKey(tenant, taskID, e.Key); err != nil {
				return err
			}
			if i := slices.IndexFunc(m.Objects, func(have ManifestEntry) bool { return have.Key == e.Key }); i >= 0 {
				m.Objects[i] = e
			} else {
				m.Objects = append(m.Objects, e)
			}
		}
		return nil
	})
}
