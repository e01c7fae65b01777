package activities

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// bucketSink keeps a batch's parts and checkpoints in the bucket under the
// checkpoint category, and merges the parts into the task's output.
type bucketSink struct {
	a      *Activities
	tenant string
	taskID string
	// shard prefixes the names of a shard's parts and records ("s003-");
	// empty for a batch run whole.
	shard string
}

func newSink(a *Activities, tenant, taskID string, shard *Shard) *bucketSink {
	s := &bucketSink{a: a, tenant: tenant, taskID: taskID}
	if shard != nil {
		s.shard = fmt.Sprintf("s%03d-", shard.Index)
	}
	return s
}

func (s *bucketSink) key(c storage.Category, name string) (string, error) {
	return taskObject{c, s.tenant, s.taskID, name}.key()
}

// putPart writes one half of a part.
func (s *bucketSink) putPart(ctx context.Context, half string, seq int, b []byte) (task.ObjectRef, error) {
	key, err := s.key(storage.Checkpoint, fmt.Sprintf("parts/%s%s-%06d.jsonl", s.shard, half, seq))
	if err != nil {
		return task.ObjectRef{}, err
	}
	return s.a.put(ctx, key, storage.Checkpoint, bytes.NewReader(b), int64(len(b)), "application/jsonl")
}

// SealPart writes both halves of a part; the keys depend only on the part
// number, so a redone part replaces the first try.
func (s *bucketSink) SealPart(ctx context.Context, p batch.Part, out, errs []byte) (batch.Part, error) {
	var err error
	if p.Output, err = s.putPart(ctx, "output", p.Seq, out); err != nil {
		return p, err
	}
	p.Errors, err = s.putPart(ctx, "errors", p.Seq, errs)
	return p, err
}

const checkpointsDir = "checkpoints/"

// SaveCheckpoint writes checkpoints/<seq>/metadata.json and keeps only the
// newest MaxCheckpoints records.
func (s *bucketSink) SaveCheckpoint(ctx context.Context, cp batch.Checkpoint) error {
	key, err := s.key(storage.Checkpoint, fmt.Sprintf("%s%s%06d/metadata.json", checkpointsDir, s.shard, cp.Seq))
	if err != nil {
		return err
	}
	if _, err := s.a.putJSON(ctx, key, storage.Checkpoint, cp); err != nil {
		return err
	}
	keys, err := s.records(ctx)
	if err != nil {
		return err
	}
	keep := s.a.MaxCheckpoints
	if keep <= 0 {
		keep = 3
	}
	for len(keys) > keep {
		if err := s.a.Store.Delete(ctx, keys[0]); err != nil {
			return err
		}
		keys = keys[1:]
	}
	return nil
}

// records are the keys of the stored checkpoint records, oldest first.
func (s *bucketSink) records(ctx context.Context) ([]string, error) {
	infos, err := s.a.Store.List(ctx, storage.TaskPrefix(storage.Checkpoint, s.tenant, s.taskID)+checkpointsDir)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, in := range infos {
		_, name, _ := strings.Cut(in.Key, "/"+checkpointsDir)
		// A whole batch's records start with a digit, a shard's with its
		// prefix; each sink sees only its own.
		mine := strings.HasPrefix(name, s.shard) && (s.shard != "" || name != "" && name[0] >= '0' && name[0] <= '9')
		if mine && strings.HasSuffix(name, "/metadata.json") {
			keys = append(keys, in.Key)
		}
	}
	sort.Strings(keys) // zero-padded sequence numbers sort in order
	return keys, nil
}

// latest is the newest stored checkpoint, or the zero one.
func (s *bucketSink) latest(ctx context.Context) (batch.Checkpoint, error) {
	var cp batch.Checkpoint
	keys, err := s.records(ctx)
	if err != nil || len(keys) == 0 {
		return cp, err
	}
	return cp, s.a.getJSON(ctx, keys[len(keys)-1], &cp)
}

// Merge streams the parts, in order, into output.jsonl and errors.jsonl
// (a shard's into its own pair, which MergeShards joins): memory stays at
// one copy buffer whatever the size of the batch.
func (s *bucketSink) Merge(ctx context.Context, parts []batch.Part) (out, errs task.ObjectRef, err error) {
	outRefs := make([]task.ObjectRef, len(parts))
	errRefs := make([]task.ObjectRef, len(parts))
	for i, p := range parts {
		outRefs[i], errRefs[i] = p.Output, p.Errors
	}
	c, outName, errName := storage.Data, NameOutput, NameErrors
	if s.shard != "" {
		c, outName, errName = storage.Checkpoint, "parts/"+s.shard+NameOutput, "parts/"+s.shard+NameErrors
	}
	return s.mergeInto(ctx, c, outName, errName, outRefs, errRefs)
}

func (s *bucketSink) mergeInto(ctx context.Context, c storage.Category, outName, errName string, outRefs, errRefs []task.ObjectRef) (out, errs task.ObjectRef, err error) {
	outKey, err := s.key(c, outName)
	if err != nil {
		return
	}
	errKey, err := s.key(c, errName)
	if err != nil {
		return
	}
	if out, err = s.concat(ctx, outRefs, outKey, c); err != nil {
		return
	}
	errs, err = s.concat(ctx, errRefs, errKey, c)
	return
}

func (s *bucketSink) concat(ctx context.Context, refs []task.ObjectRef, key string, c storage.Category) (task.ObjectRef, error) {
	var size int64
	for _, r := range refs {
		size += r.Size
	}
	pr, pw := io.Pipe()
	go func() {
		for _, r := range refs {
			if r.Size == 0 {
				continue
			}
			rc, _, err := s.a.Store.Get(ctx, r.Key)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			_, err = io.Copy(pw, rc)
			rc.Close()
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.Close()
	}()
	ref, err := s.a.put(ctx, key, c, pr, size, "application/jsonl")
	pr.CloseWithError(err) // unblocks the writer if put gave up early
	return ref, err
}
