package trainer

import (
	"context"
	"encoding/json"
	"io"
	"slices"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// maxStateBytes bounds the trainer_state.json a history reads: a log of
// every step of a long run is a few MiB at most.
const maxStateBytes = 16 << 20

// History is what a fine-tuning job's checkpoint folder in the bucket
// tells a reader that is not an attempt: every committed record, which of
// them still have their files, and the loss curve.
type History struct {
	// Records are the committed records, oldest first.
	Records []Record
	// Kept holds the Seq of every record whose manifest is still in the
	// bucket (the newest MaxKeep checkpoints and the final model).
	Kept map[int]bool
	// Log is the log_history of the newest kept checkpoint's
	// trainer_state.json (the whole run up to it, as Hugging Face's
	// Trainer keeps it), or nil when none could be read.
	Log []LogEntry
}

// ReadHistory reads a job's history without claiming anything: it takes
// no head and deletes nothing, so the server may call it while an attempt
// trains.
func ReadHistory(ctx context.Context, s storage.Store, tenant, taskID string) (History, error) {
	c := &Checkpoints{Store: s, Tenant: tenant, TaskID: taskID}
	h := History{Kept: map[int]bool{}}
	infos, err := s.List(ctx, c.prefix())
	if err != nil {
		return h, err
	}
	present := map[string]bool{}
	for _, in := range infos {
		present[in.Key] = true
	}
	if h.Records, err = c.Records(ctx); err != nil {
		return h, err
	}
	for _, r := range h.Records {
		h.Kept[r.Seq] = present[r.Manifest.Key]
	}
	for i := len(h.Records) - 1; i >= 0 && h.Log == nil; i-- {
		r := h.Records[i]
		if h.Kept[r.Seq] {
			h.Log = c.logOf(ctx, r, present)
		}
	}
	return h, nil
}

// logOf is the log_history of a kept checkpoint, nil when it has no
// readable trainer_state.json. The file is found through the manifest,
// which names it as the trainer wrote it.
func (c *Checkpoints) logOf(ctx context.Context, r Record, present map[string]bool) []LogEntry {
	var m CheckpointManifest
	if getJSON(ctx, c.Store, r.Manifest.Key, &m) != nil {
		return nil
	}
	i := slices.IndexFunc(m.Files, func(e storage.ManifestEntry) bool { return e.Name == StateFile })
	if i < 0 || !present[m.Files[i].Key] || m.Files[i].Size > maxStateBytes {
		return nil
	}
	rc, _, err := c.Store.Get(ctx, m.Files[i].Key)
	if err != nil {
		return nil
	}
	defer rc.Close()
	var st State
	if json.NewDecoder(io.LimitReader(rc, maxStateBytes)).Decode(&st) != nil {
		return nil
	}
	out := st.LogHistory[:0:0]
	for _, e := range st.LogHistory {
		if e.Loss != nil {
			out = append(out, e)
		}
	}
	return out
}
