package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// The OpenAI Uploads API: a large file goes up in parts, each its own
// request, so a network cut costs one part, not the file; the client
// sends the parts again that got no answer and completes with the IDs of
// the parts it wants, in order. Parts are objects in the bucket under the
// upload's own prefix, so an upload survives a restart of the server.
const (
	UploadIDPrefix = "upload_"
	PartIDPrefix   = "part_"
	uploadRecord   = "upload.json"
	// MaxPartBytes is OpenAI's bound on one part.
	MaxPartBytes = 64 << 20
	// MaxUploadBytes bounds a whole upload, as OpenAI's does.
	MaxUploadBytes = 8 << 30
	// uploadTTL is how long an upload may take before it expires.
	uploadTTL = time.Hour
)

// Upload is OpenAI's Upload object.
type Upload struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	ExpiresAt int64  `json:"expires_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	MimeType  string `json:"mime_type,omitempty"`
	// Status is pending, completed, cancelled or expired.
	Status string `json:"status"`
	File   *File  `json:"file"`
}

// UploadPart is OpenAI's Upload Part object.
type UploadPart struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	CreatedAt int64  `json:"created_at"`
	UploadID  string `json:"upload_id"`
}

// CreateUploadRequest is the body of POST /v1/uploads.
type CreateUploadRequest struct {
	Filename string `json:"filename"`
	Purpose  string `json:"purpose"`
	Bytes    int64  `json:"bytes"`
	MimeType string `json:"mime_type"`
}

// CompleteUploadRequest is the body of POST /v1/uploads/{id}/complete.
type CompleteUploadRequest struct {
	PartIDs []string `json:"part_ids"`
	MD5     string   `json:"md5,omitempty"`
}

func (s *Server) uploadRoutes(mux *http.ServeMux) {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request, principal) error) {
		mux.HandleFunc(pattern, s.openaiHandler(f))
	}
	h("POST /v1/uploads", s.createUpload)
	h("POST /v1/uploads/{id}/parts", s.addUploadPart)
	h("POST /v1/uploads/{id}/complete", s.completeUpload)
	h("POST /v1/uploads/{id}/cancel", s.cancelUpload)
}

func randomID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// filePurposes are the purposes a file of this server may have.
var filePurposes = []string{"batch", "fine-tune", "user_data"}

func (s *Server) createUpload(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.Policy.Check(p.Tenant, p.User, authz.Submit, p.User); err != nil {
		return err
	}
	var req CreateUploadRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		return task.Errorf(task.InvalidInput, "the request body is not JSON: %v", err)
	}
	switch {
	case !slices.Contains(filePurposes, req.Purpose):
		return paramError("purpose", "purpose %q is not supported; use %s", req.Purpose, strings.Join(filePurposes, " or "))
	case strings.TrimSpace(req.Filename) == "":
		return paramError("filename", "filename is required")
	case req.Bytes <= 0 || req.Bytes > MaxUploadBytes:
		return paramError("bytes", "bytes must be from 1 to %d", int64(MaxUploadBytes))
	}
	now := time.Now()
	u := Upload{
		ID: randomID(UploadIDPrefix), Object: "upload", Bytes: req.Bytes, CreatedAt: now.Unix(),
		ExpiresAt: now.Add(uploadTTL).Unix(), Filename: req.Filename, Purpose: req.Purpose, MimeType: req.MimeType, Status: "pending",
	}
	if err := s.putRecord(r.Context(), p.Tenant, u.ID, uploadRecord, u); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// upload reads upload id of the caller's tenant; an expired pending one
// reads as expired.
func (s *Server) upload(ctx context.Context, p principal, id string) (Upload, error) {
	var u Upload
	if !strings.HasPrefix(id, UploadIDPrefix) || storage.CheckID("upload id", id) != nil || len(p.Policy.RolesOf(p.Tenant, p.User)) == 0 {
		return u, task.Errorf(task.NotFound, "No such Upload object: %s", id)
	}
	if err := s.getRecord(ctx, p.Tenant, id, uploadRecord, &u); err != nil {
		return u, task.Errorf(task.NotFound, "No such Upload object: %s", id)
	}
	if u.Status == "pending" && time.Now().Unix() > u.ExpiresAt {
		u.Status = "expired"
	}
	return u, nil
}

func (s *Server) pendingUpload(ctx context.Context, p principal, id string) (Upload, error) {
	u, err := s.upload(ctx, p, id)
	if err == nil && u.Status != "pending" {
		err = task.Errorf(task.WrongState, "upload %s is %s; only a pending upload takes parts or completes", id, u.Status)
	}
	return u, err
}

func (s *Server) addUploadPart(w http.ResponseWriter, r *http.Request, p principal) error {
	u, err := s.pendingUpload(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return task.Errorf(task.InvalidInput, "send the part as multipart/form-data with the field data")
	}
	part := UploadPart{ID: randomID(PartIDPrefix), Object: "upload.part", CreatedAt: time.Now().Unix(), UploadID: u.ID}
	for {
		fp, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return paramError("data", "the form has no field data")
		}
		if err != nil {
			return task.Errorf(task.InvalidInput, "reading the form: %v", err)
		}
		if fp.FormName() != "data" {
			fp.Close()
			continue
		}
		sf, err := s.spool(p.User, fp, MaxPartBytes)
		fp.Close()
		if err != nil {
			return err
		}
		defer sf.remove()
		tmp := sf.path
		key, err := storage.Key(storage.Data, p.Tenant, u.ID, part.ID)
		if err != nil {
			return err
		}
		if _, err := storage.UploadFile(r.Context(), s.Tasks.Store, key, tmp, storage.UploadOptions{}); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, part)
		return nil
	}
}

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request, p principal) error {
	u, err := s.pendingUpload(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	var req CompleteUploadRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		return task.Errorf(task.InvalidInput, "the request body is not JSON: %v", err)
	}
	if len(req.PartIDs) == 0 {
		return paramError("part_ids", "part_ids is empty: give the IDs of the parts, in order")
	}
	keys := make([]string, len(req.PartIDs))
	var total int64
	for i, id := range req.PartIDs {
		if !strings.HasPrefix(id, PartIDPrefix) || storage.CheckID("part id", id) != nil {
			return paramError("part_ids", "%s is not a part of upload %s", id, u.ID)
		}
		key, err := storage.Key(storage.Data, p.Tenant, u.ID, id)
		if err != nil {
			return err
		}
		info, err := s.Tasks.Store.Stat(r.Context(), key)
		if err != nil {
			return paramError("part_ids", "%s is not a part of upload %s", id, u.ID)
		}
		keys[i], total = key, total+info.Size
	}
	if total != u.Bytes {
		return paramError("part_ids", "the parts hold %d bytes; upload %s was created for %d", total, u.ID, u.Bytes)
	}
	// The parts become one file as any uploaded file is stored: the same
	// record and content keys, so files, batches and fine-tuning read it.
	pr, pw := io.Pipe()
	go func() {
		for _, k := range keys {
			rc, _, err := s.Tasks.Store.Get(r.Context(), k)
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
	sf, err := s.spool(p.User, pr, MaxUploadBytes)
	pr.Close()
	if err != nil {
		return err
	}
	defer sf.remove()
	tmp := sf.path
	f := File{ID: newFileID(), Object: "file", CreatedAt: time.Now().Unix(), Filename: u.Filename, Purpose: u.Purpose, Status: "processed"}
	key, err := storage.Key(storage.Data, p.Tenant, f.ID, fileContent)
	if err != nil {
		return err
	}
	ct := u.MimeType
	if ct == "" {
		ct = "application/octet-stream"
	}
	info, err := storage.UploadFile(r.Context(), s.Tasks.Store, key, tmp, storage.UploadOptions{PutOptions: storage.PutOptions{ContentType: ct}})
	if err != nil {
		return err
	}
	f.Bytes = info.Size
	if err := s.putRecord(r.Context(), p.Tenant, f.ID, fileRecord, f); err != nil {
		return err
	}
	u.Status, u.File = "completed", &f
	if err := s.putRecord(r.Context(), p.Tenant, u.ID, uploadRecord, u); err != nil {
		return err
	}
	s.removeParts(r.Context(), p.Tenant, u.ID)
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (s *Server) cancelUpload(w http.ResponseWriter, r *http.Request, p principal) error {
	u, err := s.pendingUpload(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	u.Status = "cancelled"
	if err := s.putRecord(r.Context(), p.Tenant, u.ID, uploadRecord, u); err != nil {
		return err
	}
	s.removeParts(r.Context(), p.Tenant, u.ID)
	writeJSON(w, http.StatusOK, u)
	return nil
}

// removeParts deletes an ended upload's parts; one left behind is only
// space, which the bucket's lifecycle rules reclaim.
func (s *Server) removeParts(ctx context.Context, tenant, id string) {
	rec, err := storage.Key(storage.Data, tenant, id, uploadRecord)
	if err != nil {
		return
	}
	infos, err := s.Tasks.Store.List(ctx, strings.TrimSuffix(rec, uploadRecord)+PartIDPrefix)
	if err != nil {
		return
	}
	for _, info := range infos {
		if err := s.Tasks.Store.Delete(ctx, info.Key); err != nil {
			s.Log.WithError(err).WithField("key", info.Key).Warn("removing an upload's part")
		}
	}
}

// spoolUploaded copies an uploaded file of the caller's tenant to a
// spool file, for the native API's submit and attach: what went up in
// parts is used as if it were the request's body, within the same spool
// limits. It also returns the name the user gave the file.
func (s *Server) spoolUploaded(ctx context.Context, p principal, id string) (*spoolFile, string, error) {
	f, err := s.file(ctx, p, id)
	if err != nil {
		return nil, "", err
	}
	if f.ofTask {
		return nil, "", task.Errorf(task.InvalidInput, "%s is a task's own file; upload the file to use it", id)
	}
	rc, _, err := s.Tasks.Store.Get(ctx, f.key)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	sf, err := s.spool(p.User, rc, MaxUploadBytes)
	return sf, f.Filename + " (" + id + ")", err
}
