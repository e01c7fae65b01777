package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// OpenAI's fine-tuning jobs API, mapped onto fine-tuning tasks: a job is
// a task, ftjob-<task-id>; its files are uploaded to /v1/files with
// purpose=fine-tune.
const (
	FineTuneJobIDPrefix = task.FineTuneJobPrefix
	FineTunePurpose     = "fine-tune"
	fineTuneJobRecord   = "fine_tuning_job.json"
)

func (s *Server) openaiFineTuning(mux *http.ServeMux) {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request, principal) error) {
		mux.HandleFunc(pattern, s.openaiHandler(f))
	}
	h("POST /v1/fine_tuning/jobs", s.createFineTuningJob)
	h("GET /v1/fine_tuning/jobs", s.listFineTuningJobs)
	h("GET /v1/fine_tuning/jobs/{id}", s.getFineTuningJob)
	h("GET /v1/fine_tuning/jobs/{id}/events", s.listFineTuningEvents)
	h("GET /v1/fine_tuning/jobs/{id}/checkpoints", s.listFineTuningCheckpoints)
	for _, a := range []authz.Action{authz.Cancel, authz.Pause, authz.Resume} {
		h("POST /v1/fine_tuning/jobs/{id}/"+string(a), s.decideFineTuningJob(a))
	}
}

// FineTuningJob is OpenAI's fine_tuning.job object.
type FineTuningJob struct {
	ID              string               `json:"id"`
	Object          string               `json:"object"`
	CreatedAt       int64                `json:"created_at"`
	FinishedAt      *int64               `json:"finished_at"`
	Model           string               `json:"model"`
	FineTunedModel  *string              `json:"fine_tuned_model"`
	OrganizationID  string               `json:"organization_id"`
	Status          string               `json:"status"`
	TrainingFile    string               `json:"training_file"`
	ValidationFile  *string              `json:"validation_file"`
	Hyperparameters task.Hyperparameters `json:"hyperparameters"`
	Method          FineTuningMethod     `json:"method"`
	Seed            int64                `json:"seed"`
	TrainedTokens   *int64               `json:"trained_tokens"`
	ResultFiles     []string             `json:"result_files"`
	Error           *FineTuningJobError  `json:"error"`
	Metadata        map[string]string    `json:"metadata"`
	EstimatedFinish *int64               `json:"estimated_finish"`
	Integrations    []json.RawMessage    `json:"integrations"`
}

// FineTuningMethod is OpenAI's method object; only supervised is run.
type FineTuningMethod struct {
	Type       string              `json:"type"`
	Supervised *FineTuningSettings `json:"supervised,omitempty"`
}

// FineTuningSettings holds a method's hyperparameters.
type FineTuningSettings struct {
	Hyperparameters task.Hyperparameters `json:"hyperparameters"`
}

// FineTuningJobError is a failed job's error.
type FineTuningJobError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
}

// CreateFineTuningJobRequest is the body of POST /v1/fine_tuning/jobs.
// The hyperparameters are method.supervised's, or the older top-level
// field's.
type CreateFineTuningJobRequest struct {
	Model           string                `json:"model"`
	TrainingFile    string                `json:"training_file"`
	ValidationFile  string                `json:"validation_file,omitempty"`
	Suffix          string                `json:"suffix,omitempty"`
	Seed            *int64                `json:"seed,omitempty"`
	Hyperparameters *task.Hyperparameters `json:"hyperparameters,omitempty"`
	Method          *FineTuningMethod     `json:"method,omitempty"`
	Metadata        map[string]string     `json:"metadata,omitempty"`
}

// fineTuneJobData is what the server keeps of a job beside its task: what
// OpenAI's object has and the task does not.
type fineTuneJobData struct {
	TrainingFile    string               `json:"training_file"`
	ValidationFile  string               `json:"validation_file,omitempty"`
	Hyperparameters task.Hyperparameters `json:"hyperparameters"`
	Metadata        map[string]string    `json:"metadata,omitempty"`
	CreatedAt       int64                `json:"created_at"`
}

func (s *Server) createFineTuningJob(w http.ResponseWriter, r *http.Request, p principal) error {
	var req CreateFineTuningJobRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	if err := dec.Decode(&req); err != nil {
		return task.Errorf(task.InvalidInput, "the request body is not JSON: %v", err)
	}
	if req.Model == "" || req.TrainingFile == "" {
		return task.Errorf(task.InvalidInput, "model and training_file are required")
	}
	if len(req.Metadata) > 16 {
		return task.Errorf(task.InvalidInput, "metadata has %d keys; at most 16", len(req.Metadata))
	}
	ft := &task.FineTune{Suffix: req.Suffix}
	if req.Hyperparameters != nil {
		ft.Hyperparameters = *req.Hyperparameters
	}
	if m := req.Method; m != nil {
		if m.Type != "supervised" {
			return task.Errorf(task.InvalidInput, "method %q is not supported; this server runs supervised fine-tuning", m.Type)
		}
		if m.Supervised != nil {
			ft.Hyperparameters = m.Supervised.Hyperparameters
		}
	}
	if req.Seed != nil {
		ft.Seed = *req.Seed
	}
	tr := taskclient.SubmitRequest{FineTune: ft}
	var files [2]*spoolFile
	defer func() {
		for _, f := range files {
			f.remove()
		}
	}()
	// The task gets its own copy of each file under its own prefix, as
	// any submitted file, through the same path (taskclient.Submit).
	extendTransfer(w)
	for i, fid := range []string{req.TrainingFile, req.ValidationFile} {
		if fid == "" {
			continue
		}
		file, err := s.file(r.Context(), p, fid)
		if err != nil {
			return err
		}
		if file.Purpose != FineTunePurpose {
			return task.Errorf(task.InvalidInput, "file %s has purpose %s, not %s", file.ID, file.Purpose, FineTunePurpose)
		}
		if files[i], err = s.download(r.Context(), p.User, file.key); err != nil {
			return err
		}
	}
	tr.File = files[0].path
	if files[1] != nil {
		tr.ValidationFile = files[1].path
	}
	id := taskclient.NewID()
	rec := fineTuneJobData{TrainingFile: req.TrainingFile, ValidationFile: req.ValidationFile, Hyperparameters: ft.Hyperparameters, Metadata: req.Metadata, CreatedAt: time.Now().Unix()}
	if err := s.putRecord(r.Context(), p.Tenant, id, fineTuneJobRecord, rec); err != nil {
		return err
	}
	if _, err := s.startTask(r.Context(), p, SubmitRequest{ID: id, Tenant: p.Tenant, Model: req.Model, Metadata: req.Metadata}, tr); err != nil {
		return err
	}
	job, err := s.fineTuningJob(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, job)
	return nil
}

// fineTuningJobStatus is the OpenAI status of a task state. Waiting for
// approval or a node is "queued"; a paused job is "queued" too, until
// it resumes.
func fineTuningJobStatus(s task.State) string {
	switch s {
	case task.Submitted, task.Authorized, task.Screened:
		return "validating_files"
	case task.AwaitingApproval, task.Approved, task.Dispatched, task.Paused:
		return "queued"
	case task.Running, task.Archiving:
		return "running"
	case task.Completed:
		return "succeeded"
	case task.Cancelled:
		return "cancelled"
	}
	return "failed"
}

// fineTuningJob is task id as OpenAI's object; a task of another tenant
// or another kind is not found.
func (s *Server) fineTuningJob(ctx context.Context, p principal, id string) (FineTuningJob, error) {
	notFound := task.Errorf(task.NotFound, "No such fine-tuning job: %s%s", FineTuneJobIDPrefix, id)
	ti, roles, err := s.authorize(ctx, p, id, authz.View)
	if err != nil || ti.Tenant != p.Tenant || ti.Kind != string(task.KindFineTune) {
		return FineTuningJob{}, notFound
	}
	var rec fineTuneJobData
	_ = s.getRecord(ctx, ti.Tenant, id, fineTuneJobRecord, &rec) // absent for a job created through the native API
	job := FineTuningJob{
		ID: FineTuneJobIDPrefix + id, Object: "fine_tuning.job", CreatedAt: rec.CreatedAt, OrganizationID: ti.Tenant,
		TrainingFile: rec.TrainingFile, Hyperparameters: rec.Hyperparameters,
		Metadata:    p.Policy.Sensitive.MaskMetadata(rec.Metadata, roles),
		ResultFiles: []string{}, Integrations: []json.RawMessage{},
	}
	if rec.ValidationFile != "" {
		job.ValidationFile = &rec.ValidationFile
	}
	state := task.State(ti.State)
	// As for batches: without a worker to answer the query, the state is
	// Temporal's own.
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	st, qerr := s.Tasks.Status(qctx, id)
	cancel()
	if qerr == nil {
		state, job.Model = st.State, st.Model
		if job.CreatedAt == 0 && len(st.Audit) > 0 {
			job.CreatedAt = st.Audit[0].Time.Unix()
		}
		if ft := st.FineTune; ft != nil {
			job.Seed = ft.Seed
			if h := ft.Hyperparameters; h != nil {
				job.Hyperparameters = task.Hyperparameters{NEpochs: task.Number(float64(h.NEpochs)), BatchSize: task.Number(float64(h.BatchSize)), LearningRateMultiplier: task.Number(h.LearningRateMultiplier)}
			}
			if ft.FineTunedModel != "" {
				job.FineTunedModel = &ft.FineTunedModel
			}
		}
		if state.Final() {
			if t := st.EnteredAt(state); !t.IsZero() {
				u := t.Unix()
				job.FinishedAt = &u
			}
		}
		if state == task.Failed || state == task.Rejected || state == task.Expired {
			msg := st.LastError
			for _, tr := range st.Audit {
				if tr.To == state && tr.Reason != "" {
					msg = tr.Reason
				}
			}
			job.Error = &FineTuningJobError{Code: strings.ToLower(string(state)), Message: msg}
		}
	}
	job.Method = FineTuningMethod{Type: "supervised", Supervised: &FineTuningSettings{Hyperparameters: job.Hyperparameters}}
	job.Status = fineTuningJobStatus(state)
	if qerr == nil && state == task.Running && st.FineTune != nil && st.FineTune.WaitingForSlot {
		job.Status = "queued" // every training slot of the fleet is taken
	}
	return job, nil
}

func (s *Server) getFineTuningJob(w http.ResponseWriter, r *http.Request, p principal) error {
	id, ok := strings.CutPrefix(r.PathValue("id"), FineTuneJobIDPrefix)
	if !ok {
		return task.Errorf(task.NotFound, "No such fine-tuning job: %s", r.PathValue("id"))
	}
	job, err := s.fineTuningJob(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, job)
	return nil
}

// FineTuningJobList is OpenAI's list of fine-tuning jobs.
type FineTuningJobList struct {
	Object  string          `json:"object"`
	Data    []FineTuningJob `json:"data"`
	HasMore bool            `json:"has_more"`
}

func (s *Server) listFineTuningJobs(w http.ResponseWriter, r *http.Request, p principal) error {
	data, more, err := listTasks(s, r, p, task.KindFineTune, FineTuneJobIDPrefix, s.fineTuningJob)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, FineTuningJobList{Object: "list", Data: data, HasMore: more})
	return nil
}

// decideFineTuningJob is cancel, pause or resume of a job: the task's
// update of that name, by the key's user, answered with the job. The
// checkpoints stay; a resumed job trains on from the newest.
func (s *Server) decideFineTuningJob(a authz.Action) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		id, ok := strings.CutPrefix(r.PathValue("id"), FineTuneJobIDPrefix)
		notFound := task.Errorf(task.NotFound, "No such fine-tuning job: %s", r.PathValue("id"))
		if !ok {
			return notFound
		}
		ti, roles, err := s.authorize(r.Context(), p, id, a)
		if ti.Tenant != p.Tenant || ti.Kind != string(task.KindFineTune) {
			return notFound
		}
		if err != nil {
			return err
		}
		if ti.Closed {
			return task.Errorf(task.WrongState, "fine-tuning job %s%s has ended (%s)", FineTuneJobIDPrefix, id, ti.State)
		}
		req := task.DecisionRequest{Actor: p.User, Reason: string(a) + " through the fine-tuning jobs API"}
		req.Assertion = s.Tasks.Assert(id, string(a), req, roles)
		if _, err := s.Tasks.Decide(r.Context(), id, string(a), req); err != nil {
			return err
		}
		s.hub.poke(id)
		job, err := s.fineTuningJob(r.Context(), p, id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, job)
		return nil
	}
}
