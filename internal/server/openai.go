package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/batch"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// The OpenAI Files and Batches API, as the official clients call it. The
// tenant is the key's. A batch is a task: batch_<task-id>; its output and
// error files are file-<task-id>-output and file-<task-id>-errors.
const (
	BatchIDPrefix = "batch_"
	FileIDPrefix  = "file-"
)

func (s *Server) openai(mux *http.ServeMux) {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request, principal) error) {
		mux.HandleFunc(pattern, s.openaiHandler(f))
	}
	h("POST /v1/files", s.createFile)
	h("GET /v1/files", s.listFiles)
	h("GET /v1/files/{id}", s.getFile)
	h("GET /v1/files/{id}/content", s.fileContent)
	h("DELETE /v1/files/{id}", s.deleteFile)
	h("POST /v1/batches", s.createBatch)
	h("GET /v1/batches", s.listBatches)
	h("GET /v1/batches/{id}", s.getBatch)
	h("POST /v1/batches/{id}/cancel", s.cancelBatch)
	s.uploadRoutes(mux)
	s.openaiFineTuning(mux)
}

// OpenAIError is OpenAI's error body.
type OpenAIError struct {
	Error OpenAIErrorBody `json:"error"`
}

// OpenAIErrorBody is the inside of OpenAIError.
type OpenAIErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (s *Server) openaiHandler(f func(http.ResponseWriter, *http.Request, principal) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		drain := trackBody(r)
		p, err := s.authenticate(r)
		if err == nil && p.Tenant == "" {
			err = task.Errorf(task.PermissionDenied, "this API key has no tenant; the OpenAI API needs one")
		}
		if err == nil {
			err = f(w, r, p)
		}
		if err == nil {
			return
		}
		drain()
		code := httpStatus(err)
		setRetryAfter(w, err)
		body := OpenAIErrorBody{Message: errMessage(err), Type: "invalid_request_error"}
		var c string
		switch {
		case code == http.StatusUnauthorized:
			c = "invalid_api_key"
			body.Message = "Incorrect API key provided. " + body.Message
		case code == http.StatusTooManyRequests:
			c = "rate_limit_exceeded"
		case code == http.StatusInsufficientStorage:
			c = "insufficient_storage"
			body.Type = "server_error"
		case code >= 500:
			body.Type = "server_error"
			s.Log.WithError(err).WithField("path", r.URL.Path).Warn("request failed")
		case code == http.StatusNotFound:
			c = "not_found"
		case code == http.StatusForbidden:
			c = "permission_denied"
		case code == http.StatusConflict:
			c = "conflict"
		}
		if errType(err) == task.NoNode {
			c = "model_not_available"
			model := "model"
			body.Param = &model
		}
		var pe *paramErr
		if errors.As(err, &pe) {
			body.Param = &pe.param
		}
		if c != "" {
			body.Code = &c
		}
		writeJSON(w, code, OpenAIError{Error: body})
	}
}

// File is OpenAI's File object.
type File struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	ExpiresAt *int64 `json:"expires_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	Status    string `json:"status"`
	// key is where the content is.
	key string
	// ofTask: the file is a task's input, output or errors, kept with it.
	ofTask bool
	// written orders files created in the same second (files.list).
	written time.Time
}

const (
	fileRecord  = "file.json"
	fileContent = "input.jsonl"
	batchRecord = "batch.json"
)

func newFileID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return FileIDPrefix + hex.EncodeToString(b)
}

// maxFormParts bounds the parts of a file upload form: OpenAI's has two
// (purpose and file), clients may add a few.
const maxFormParts = 8

func (s *Server) createFile(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := p.Policy.Check(p.Tenant, p.User, authz.Submit, p.User); err != nil {
		return err
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return task.Errorf(task.InvalidInput, "send the file as multipart/form-data with fields purpose and file")
	}
	extendTransfer(w)
	var purpose, filename string
	var sf *spoolFile
	defer func() { sf.remove() }()
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return task.Errorf(task.InvalidInput, "reading the form: %v", err)
		}
		if parts == maxFormParts {
			return task.Errorf(task.InvalidInput, "the form has more than %d parts; send purpose and one file", maxFormParts)
		}
		switch part.FormName() {
		case "purpose":
			b, _ := io.ReadAll(io.LimitReader(part, 64))
			purpose = strings.TrimSpace(string(b))
		case "file":
			if sf != nil {
				return task.Errorf(task.InvalidInput, "the form has more than one file; send one file per request")
			}
			filename = part.FileName()
			if sf, err = s.spool(p.User, part, MaxBatchBytes); err != nil {
				return err
			}
		}
		part.Close()
	}
	if purpose != "batch" && purpose != FineTunePurpose {
		return task.Errorf(task.InvalidInput, "purpose %q is not supported; this server takes purpose=batch or purpose=%s", purpose, FineTunePurpose)
	}
	if sf == nil {
		return task.Errorf(task.InvalidInput, "the form has no file")
	}
	f := File{ID: newFileID(), Object: "file", CreatedAt: time.Now().Unix(), Filename: filename, Purpose: purpose, Status: "processed"}
	key, err := storage.Key(storage.Data, p.Tenant, f.ID, fileContent)
	if err != nil {
		return err
	}
	info, err := storage.UploadFile(r.Context(), s.Tasks.Store, key, sf.path, storage.UploadOptions{PutOptions: storage.PutOptions{ContentType: "application/jsonl"}})
	if err != nil {
		return err
	}
	f.Bytes = info.Size
	if err := s.putRecord(r.Context(), p.Tenant, f.ID, fileRecord, f); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (s *Server) putRecord(ctx context.Context, tenant, id, name string, v any) error {
	key, err := storage.Key(storage.Data, tenant, id, name)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(v)
	_, err = s.Tasks.Store.Put(ctx, key, strings.NewReader(string(b)), int64(len(b)), storage.PutOptions{ContentType: "application/json"})
	return err
}

func (s *Server) getRecord(ctx context.Context, tenant, id, name string, v any) error {
	key, err := storage.Key(storage.Data, tenant, id, name)
	if err != nil {
		return task.Errorf(task.NotFound, "no such object %s", id)
	}
	rc, _, err := s.Tasks.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	return json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(v)
}

// file finds file id in the caller's tenant: an uploaded file under the
// tenant's own prefix, or the output or error file of one of its batches.
// Another tenant's file is not found, by construction.
func (s *Server) file(ctx context.Context, p principal, id string) (File, error) {
	notFound := task.Errorf(task.NotFound, "No such File object: %s", id)
	rest, ok := strings.CutPrefix(id, FileIDPrefix)
	if !ok {
		return File{}, notFound
	}
	for _, kind := range []string{"output", "errors", "input"} {
		taskID, ok := strings.CutSuffix(rest, "-"+kind)
		if !ok {
			continue
		}
		ti, _, err := s.authorize(ctx, p, taskID, authz.View)
		if err != nil || ti.Tenant != p.Tenant {
			return File{}, notFound
		}
		key, err := storage.Key(storage.Data, ti.Tenant, taskID, kind+".jsonl")
		if err != nil {
			return File{}, notFound
		}
		info, err := s.Tasks.Store.Stat(ctx, key)
		if err != nil {
			return File{}, notFound
		}
		purpose := "batch_output"
		if kind == "input" {
			purpose = "batch"
		}
		return File{ID: id, Object: "file", Bytes: info.Size, CreatedAt: info.LastModified.Unix(), Filename: kind + ".jsonl", Purpose: purpose, Status: "processed", key: key, ofTask: true}, nil
	}
	if len(p.Policy.RolesOf(p.Tenant, p.User)) == 0 {
		return File{}, notFound
	}
	var f File
	if err := s.getRecord(ctx, p.Tenant, id, fileRecord, &f); err != nil {
		return File{}, notFound
	}
	f.key, _ = storage.Key(storage.Data, p.Tenant, id, fileContent)
	return f, nil
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request, p principal) error {
	f, err := s.file(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (s *Server) fileContent(w http.ResponseWriter, r *http.Request, p principal) error {
	f, err := s.file(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	rc, info, err := s.Tasks.Store.Get(r.Context(), f.key)
	if err != nil {
		return err
	}
	defer rc.Close()
	extendTransfer(w)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	_, _ = io.Copy(w, rc)
	return nil
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	f, err := s.file(r.Context(), p, id)
	if err != nil {
		return err
	}
	if f.ofTask {
		return task.Errorf(task.InvalidInput, "%s is a batch's own file; it is kept with its task", id)
	}
	if err := p.Policy.Check(p.Tenant, p.User, authz.Submit, p.User); err != nil {
		return err
	}
	rec, _ := storage.Key(storage.Data, p.Tenant, id, fileRecord)
	for _, k := range []string{f.key, rec} {
		if err := s.Tasks.Store.Delete(r.Context(), k); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "file", "deleted": true})
	return nil
}

// Batch is OpenAI's Batch object.
type Batch struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Endpoint         string            `json:"endpoint"`
	Errors           *BatchErrors      `json:"errors"`
	InputFileID      string            `json:"input_file_id"`
	CompletionWindow string            `json:"completion_window"`
	Status           string            `json:"status"`
	OutputFileID     *string           `json:"output_file_id"`
	ErrorFileID      *string           `json:"error_file_id"`
	CreatedAt        int64             `json:"created_at"`
	InProgressAt     *int64            `json:"in_progress_at"`
	ExpiresAt        *int64            `json:"expires_at"`
	FinalizingAt     *int64            `json:"finalizing_at"`
	CompletedAt      *int64            `json:"completed_at"`
	FailedAt         *int64            `json:"failed_at"`
	ExpiredAt        *int64            `json:"expired_at"`
	CancellingAt     *int64            `json:"cancelling_at"`
	CancelledAt      *int64            `json:"cancelled_at"`
	RequestCounts    task.Counts       `json:"request_counts"`
	Usage            BatchUsage        `json:"usage"`
	Metadata         map[string]string `json:"metadata"`
}

// BatchErrors is the errors list of a failed batch.
type BatchErrors struct {
	Object string       `json:"object"`
	Data   []BatchError `json:"data"`
}

// BatchError is one entry of BatchErrors.
type BatchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"`
}

// batchRecordData is what the server keeps of a batch beside its task:
// what OpenAI's object has and the task does not.
type batchRecordData struct {
	InputFileID      string            `json:"input_file_id"`
	Endpoint         string            `json:"endpoint"`
	CompletionWindow string            `json:"completion_window"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	CreatedAt        int64             `json:"created_at"`
	Cancelling       int64             `json:"cancelling_at,omitempty"`
}

// CreateBatchRequest is the body of POST /v1/batches.
type CreateBatchRequest struct {
	InputFileID      string            `json:"input_file_id"`
	Endpoint         string            `json:"endpoint"`
	CompletionWindow string            `json:"completion_window"`
	Metadata         map[string]string `json:"metadata,omitempty"`
}

func (s *Server) createBatch(w http.ResponseWriter, r *http.Request, p principal) error {
	var req CreateBatchRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil {
		return task.Errorf(task.InvalidInput, "the request body is not JSON: %v", err)
	}
	if req.Endpoint != batch.ChatCompletionsURL {
		return task.Errorf(task.InvalidInput, "endpoint %q is not supported; use %s", req.Endpoint, batch.ChatCompletionsURL)
	}
	if req.CompletionWindow != "24h" {
		return task.Errorf(task.InvalidInput, "completion_window must be 24h")
	}
	if len(req.Metadata) > 16 {
		return task.Errorf(task.InvalidInput, "metadata has %d keys; at most 16", len(req.Metadata))
	}
	f, err := s.file(r.Context(), p, req.InputFileID)
	if err != nil {
		return err
	}
	if f.Purpose != "batch" {
		return task.Errorf(task.InvalidInput, "file %s has purpose %s, not batch", f.ID, f.Purpose)
	}
	// The task gets its own copy of the input under its own prefix, as
	// any submitted file, through the same path (taskclient.Submit).
	extendTransfer(w)
	sf, err := s.download(r.Context(), p.User, f.key)
	if err != nil {
		return err
	}
	defer sf.remove()
	id := taskclient.NewID()
	rec := batchRecordData{InputFileID: f.ID, Endpoint: req.Endpoint, CompletionWindow: req.CompletionWindow, Metadata: req.Metadata, CreatedAt: time.Now().Unix()}
	if err := s.putRecord(r.Context(), p.Tenant, id, batchRecord, rec); err != nil {
		return err
	}
	if _, err := s.submitTask(r.Context(), p, SubmitRequest{ID: id, Tenant: p.Tenant, Metadata: req.Metadata}, sf.path); err != nil {
		return nameFile(err, sf.path, f.Filename+" ("+f.ID+")")
	}
	b, err := s.batch(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// download spools an uploaded file of user's back from the bucket, as
// an upload of theirs: it counts against the same caps.
func (s *Server) download(ctx context.Context, user, key string) (*spoolFile, error) {
	rc, _, err := s.Tasks.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return s.spool(user, rc, MaxBatchBytes)
}

// batchStatus is the OpenAI status of a task state. A task waiting for
// approval is still "validating": OpenAI has no such status, and the
// native API (GET /api/v1/tasks/<id>) shows the approvals.
func batchStatus(s task.State, cancelling bool) string {
	switch s {
	case task.Completed:
		return "completed"
	case task.Rejected, task.Failed:
		return "failed"
	case task.Expired:
		return "expired"
	case task.Cancelled:
		return "cancelled"
	case task.Archiving:
		if cancelling {
			return "cancelling"
		}
		return "finalizing"
	}
	if cancelling {
		return "cancelling"
	}
	switch s {
	case task.Dispatched, task.Running, task.Paused:
		return "in_progress"
	}
	return "validating"
}

func (s *Server) batch(ctx context.Context, p principal, id string) (Batch, error) {
	ti, roles, err := s.authorize(ctx, p, id, authz.View)
	// A fine-tuning task is a fine-tuning job, not a batch.
	if err != nil || ti.Tenant != p.Tenant || ti.Kind == string(task.KindFineTune) {
		return Batch{}, task.Errorf(task.NotFound, "No such Batch object: %s%s", BatchIDPrefix, id)
	}
	var rec batchRecordData
	if err := s.getRecord(ctx, ti.Tenant, id, batchRecord, &rec); err != nil {
		// A batch task submitted through the native API.
		rec = batchRecordData{Endpoint: batch.ChatCompletionsURL, CompletionWindow: "24h"}
	}
	if rec.InputFileID == "" {
		// Submitted through the native API: the task's own input.
		rec.InputFileID = FileIDPrefix + id + "-input"
	}
	b := Batch{
		ID: BatchIDPrefix + id, Object: "batch", Endpoint: rec.Endpoint, InputFileID: rec.InputFileID,
		CompletionWindow: rec.CompletionWindow, CreatedAt: rec.CreatedAt,
		Metadata: p.Policy.Sensitive.MaskMetadata(rec.Metadata, roles),
	}
	if rec.Cancelling > 0 && !task.State(ti.State).Final() {
		b.CancellingAt = &rec.Cancelling
	}
	state := task.State(ti.State)
	// The status query needs a worker; a busy or restarting one must not
	// fail the poll, so without it the state is Temporal's own.
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	st, qerr := s.Tasks.Status(qctx, id)
	cancel()
	if qerr == nil {
		state = st.State
		b.RequestCounts = st.Progress.Counts
		b.Usage = batchUsage(st.Usage)
		if b.CreatedAt == 0 && len(st.Audit) > 0 {
			b.CreatedAt = st.Audit[0].Time.Unix()
		}
		at := func(states ...task.State) *int64 {
			for _, s := range states {
				if t := st.EnteredAt(s); !t.IsZero() {
					u := t.Unix()
					return &u
				}
			}
			return nil
		}
		b.InProgressAt = at(task.Running, task.Dispatched)
		b.FinalizingAt = at(task.Archiving)
		b.CompletedAt = at(task.Completed)
		b.FailedAt = at(task.Failed, task.Rejected)
		b.ExpiredAt = at(task.Expired)
		b.CancelledAt = at(task.Cancelled)
		if state == task.Failed || state == task.Rejected {
			msg := st.LastError
			for _, tr := range st.Audit {
				if tr.To == state && tr.Reason != "" {
					msg = tr.Reason
				}
			}
			b.Errors = &BatchErrors{Object: "list", Data: []BatchError{{Code: strings.ToLower(string(state)), Message: msg}}}
		}
		for _, a := range st.Artifacts {
			switch storage.NameOf(a.Key) {
			case "output.jsonl":
				v := FileIDPrefix + id + "-output"
				b.OutputFileID = &v
			case "errors.jsonl":
				v := FileIDPrefix + id + "-errors"
				b.ErrorFileID = &v
			}
		}
	}
	if b.CreatedAt > 0 {
		// The completion window, from when the batch was created: known
		// only here for a batch submitted through the native API.
		exp := b.CreatedAt + 24*3600
		b.ExpiresAt = &exp
	}
	b.Status = batchStatus(state, b.CancellingAt != nil)
	return b, nil
}

func (s *Server) getBatch(w http.ResponseWriter, r *http.Request, p principal) error {
	id, ok := strings.CutPrefix(r.PathValue("id"), BatchIDPrefix)
	if !ok {
		return task.Errorf(task.NotFound, "No such Batch object: %s", r.PathValue("id"))
	}
	b, err := s.batch(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request, p principal) error {
	id, ok := strings.CutPrefix(r.PathValue("id"), BatchIDPrefix)
	if !ok {
		return task.Errorf(task.NotFound, "No such Batch object: %s", r.PathValue("id"))
	}
	ti, roles, err := s.authorize(r.Context(), p, id, authz.Cancel)
	if err != nil {
		if task.TypeOf(err) == task.PermissionDenied && ti.Tenant == p.Tenant {
			return err
		}
		return task.Errorf(task.NotFound, "No such Batch object: %s%s", BatchIDPrefix, id)
	}
	if ti.Tenant != p.Tenant {
		return task.Errorf(task.NotFound, "No such Batch object: %s%s", BatchIDPrefix, id)
	}
	req := task.DecisionRequest{Actor: p.User, Reason: "cancelled through the Batches API"}
	req.Assertion = s.Tasks.Assert(id, task.UpdateCancel, req, roles)
	if _, err := s.Tasks.Decide(r.Context(), id, task.UpdateCancel, req); err != nil {
		return err
	}
	var rec batchRecordData
	if err := s.getRecord(r.Context(), ti.Tenant, id, batchRecord, &rec); err == nil && rec.Cancelling == 0 {
		rec.Cancelling = time.Now().Unix()
		_ = s.putRecord(r.Context(), ti.Tenant, id, batchRecord, rec)
	}
	s.hub.poke(id)
	b, err := s.batch(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// BatchList is OpenAI's list of batches.
type BatchList struct {
	Object  string  `json:"object"`
	Data    []Batch `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func (s *Server) listBatches(w http.ResponseWriter, r *http.Request, p principal) error {
	data, more, err := listTasks(s, r, p, task.KindBatch, BatchIDPrefix, s.batch)
	if err != nil {
		return err
	}
	out := BatchList{Object: "list", Data: data, HasMore: more}
	if n := len(out.Data); n > 0 {
		out.FirstID, out.LastID = &out.Data[0].ID, &out.Data[n-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listTasks is one page of the caller's tenant's tasks of a kind, as
// OpenAI lists them (limit 1 to 100, default 20, after an object's ID),
// each read by one; a task that cannot be read is left out.
func listTasks[T any](s *Server, r *http.Request, p principal, kind task.Kind, idPrefix string,
	one func(context.Context, principal, string) (T, error)) ([]T, bool, error) {
	if len(p.Policy.RolesOf(p.Tenant, p.User)) == 0 {
		return nil, false, task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", p.User, p.Tenant)
	}
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return nil, false, task.Errorf(task.InvalidInput, "limit must be 1 to 100")
		}
		limit = n
	}
	after := strings.TrimPrefix(q.Get("after"), idPrefix)
	all, err := s.Tasks.List(r.Context(), taskclient.ListRequest{Tenants: []string{p.Tenant}, Kind: kind, Limit: 1000})
	if err != nil {
		return nil, false, err
	}
	start := 0
	if after != "" {
		start = len(all)
		for i, t := range all {
			if t.ID == after {
				start = i + 1
				break
			}
		}
	}
	data := []T{}
	for _, t := range all[start:] {
		if len(data) == limit {
			return data, true, nil
		}
		v, err := one(r.Context(), p, t.ID)
		if err != nil {
			continue
		}
		data = append(data, v)
	}
	return data, false, nil
}
