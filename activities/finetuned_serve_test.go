package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// A node loads a published fine-tuned model of its base model once, from
// a folder of its cache whose files match the model's manifest; one whose
// file does not match its sha256 is not loaded (and is named), nor is an
// entry listed under a base that is not the model's.
func TestServedFineTunedLoadsOnlyVerifiedModels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, store := startMinIO(t, ctx)
	a := &Activities{Store: store}
	good := task.FineTunedName("m", "demo", "good", "t1")
	bad := task.FineTunedName("m", "demo", "bad", "t2")
	publish := func(name string, weights, listed []byte) {
		prefix := task.FineTunedPrefix("demo", name)
		if _, err := store.Put(ctx, prefix+"model.bin", bytes.NewReader(weights), int64(len(weights)), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(listed)
		meta := task.CacheMeta{Name: name, Revision: "x", Files: []task.ModelFile{{Name: "model.bin", Size: int64(len(listed)), SHA256: hex.EncodeToString(sum[:])}}}
		ref, err := a.putJSON(ctx, prefix+task.CacheMetaName, storage.Data, meta)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.indexFineTuned(ctx, name, ref); err != nil {
			t.Fatal(err)
		}
	}
	publish(good, []byte("weights"), []byte("weights"))
	publish(bad, []byte("tampered"), []byte("weights!"))
	// An entry of m's model under another base.
	stray := task.FineTunedName("m", "demo", "stray", "t3")
	if _, err := a.putJSON(ctx, fineTunedIndexPrefix+"other/"+stray+".json", storage.Data, FineTunedRecord{Name: stray}); err != nil {
		t.Fatal(err)
	}

	var loads []string
	dir := t.TempDir()
	s := &ServedFineTuned{
		Store: store, Cache: &model.Cache{Dir: dir, Source: StoreSource{Store: store}}, Bases: []string{"m", "other", "*"},
		Load: func(_ context.Context, name, path string) error { loads = append(loads, name+" "+path); return nil },
	}
	added, err := s.Sync(ctx)
	if !slices.Equal(added, []string{good}) || !slices.Equal(s.Loaded(), []string{good}) {
		t.Fatalf("loaded %v (all: %v); want only %s", added, s.Loaded(), good)
	}
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), stray+": listed under base other, but its base is m") {
		t.Fatalf("Sync's error %v; want %s refused for its sha256 and the entry under other refused", err, bad)
	}
	if want := []string{good + " " + filepath.Join(dir, "demo", good)}; !slices.Equal(loads, want) {
		t.Fatalf("load calls %v; want %v", loads, want)
	}
	if added, _ := s.Sync(ctx); len(added) != 0 || len(loads) != 1 {
		t.Fatalf("a second sync loaded %v (calls %v); want nothing new", added, loads)
	}
}
