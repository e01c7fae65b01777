package storage

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// uploadState is what a resumable upload keeps on local disk between runs.
// S3 knows which parts it holds (ListParts); the state only remembers the
// upload ID and what the file was when the upload started.
type uploadState struct {
	Version  int       `json:"version"`
	Bucket   string    `json:"bucket"`
	Key      string    `json:"key"`
	Path     string    `json:"path"`
	Size     int64     `json:"size"`
	ModTime  time.Time `json:"mod_time"`
	UploadID string    `json:"upload_id"`
	PartSize int64     `json:"part_size"`
	SHA256   string    `json:"sha256"`
	Started  time.Time `json:"started"`
}

const stateVersion = 1

// stateFile is the state of one upload: one small JSON file, named by a
// digest of bucket, key, file size and modification time, so that the same
// file uploaded to the same key finds it, and a changed file does not.
type stateFile struct {
	path string
	base uploadState // the fields that name the upload
}

func newStateFile(dir, bucket, key, file string, fi os.FileInfo) *stateFile {
	h := sha256.New()
	for _, s := range []string{bucket, key, strconv.FormatInt(fi.Size(), 10), strconv.FormatInt(fi.ModTime().UnixNano(), 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	return &stateFile{
		path: filepath.Join(dir, hex.EncodeToString(h.Sum(nil))[:40]+".json"),
		base: uploadState{Version: stateVersion, Bucket: bucket, Key: key, Path: abs, Size: fi.Size(), ModTime: fi.ModTime().UTC()},
	}
}

// load reads the state; a missing, unreadable or foreign one is no state.
func (s *stateFile) load() (uploadState, bool) {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return uploadState{}, false
	}
	var st uploadState
	if json.Unmarshal(b, &st) != nil || st.Version != stateVersion || st.UploadID == "" ||
		st.Bucket != s.base.Bucket || st.Key != s.base.Key || st.Size != s.base.Size || !st.ModTime.Equal(s.base.ModTime) {
		return uploadState{}, false
	}
	return st, true
}

// save writes the state atomically (a temporary file renamed over it), so
// a crash leaves the old state or the new, never half of one.
func (s *stateFile) save(st uploadState) error {
	st.Version, st.Bucket, st.Key, st.Path, st.Size, st.ModTime = s.base.Version, s.base.Bucket, s.base.Key, s.base.Path, s.base.Size, s.base.ModTime
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("storage: upload state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".upload-*.json")
	if err != nil {
		return fmt.Errorf("storage: upload state: %w", err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr == nil && cerr == nil {
		werr = os.Rename(tmp.Name(), s.path)
	}
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("storage: upload state: %w", cmp.Or(werr, cerr))
	}
	s.prune()
	return nil
}

func (s *stateFile) remove() { _ = os.Remove(s.path) }

// stateMaxAge is how long the state of an upload nobody resumed is kept:
// by then the server has dropped the parts (MinIO after a day; AWS when a
// lifecycle rule says so).
const stateMaxAge = 30 * 24 * time.Hour

// prune removes the states of uploads abandoned long ago, so the folder
// does not grow with every file that was never uploaded again.
func (s *stateFile) prune() {
	entries, err := os.ReadDir(filepath.Dir(s.path))
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && filepath.Ext(e.Name()) == ".json" && time.Since(info.ModTime()) > stateMaxAge {
			_ = os.Remove(filepath.Join(filepath.Dir(s.path), e.Name()))
		}
	}
}
