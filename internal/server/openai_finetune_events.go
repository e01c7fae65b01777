package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/authz"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// FineTuningJobEvent is OpenAI's fine_tuning.job.event: a message (the
// job's transitions) or metrics (a point of the loss curve, data {step,
// train_loss, epoch}).
type FineTuningJobEvent struct {
	ID        string         `json:"id"`
	Object    string         `json:"object"`
	CreatedAt int64          `json:"created_at"`
	Level     string         `json:"level"`
	Message   string         `json:"message"`
	Type      string         `json:"type"`
	Data      map[string]any `json:"data"`
}

// FineTuningJobEventList is OpenAI's list of a job's events, newest
// first.
type FineTuningJobEventList struct {
	Object  string               `json:"object"`
	Data    []FineTuningJobEvent `json:"data"`
	HasMore bool                 `json:"has_more"`
}

// FineTuningJobCheckpoint is OpenAI's fine_tuning.job.checkpoint.
type FineTuningJobCheckpoint struct {
	ID                       string            `json:"id"`
	Object                   string            `json:"object"`
	CreatedAt                int64             `json:"created_at"`
	FineTunedModelCheckpoint string            `json:"fine_tuned_model_checkpoint"`
	StepNumber               int               `json:"step_number"`
	Metrics                  CheckpointMetrics `json:"metrics"`
	FineTuningJobID          string            `json:"fine_tuning_job_id"`
}

// CheckpointMetrics are a checkpoint's metrics, as far as the trainer
// contract gives them.
type CheckpointMetrics struct {
	Step      float64 `json:"step"`
	TrainLoss float64 `json:"train_loss"`
}

// FineTuningJobCheckpointList is OpenAI's list of a job's checkpoints,
// newest first.
type FineTuningJobCheckpointList struct {
	Object  string                    `json:"object"`
	Data    []FineTuningJobCheckpoint `json:"data"`
	FirstID *string                   `json:"first_id"`
	LastID  *string                   `json:"last_id"`
	HasMore bool                      `json:"has_more"`
}

// fineTuningJobTask is the task of the job in the path; a task of
// another tenant or kind is not found, as by fineTuningJob.
func (s *Server) fineTuningJobTask(r *http.Request, p principal) (taskInfo, error) {
	id, ok := strings.CutPrefix(r.PathValue("id"), FineTuneJobIDPrefix)
	notFound := task.Errorf(task.NotFound, "No such fine-tuning job: %s", r.PathValue("id"))
	if !ok {
		return taskInfo{}, notFound
	}
	ti, _, err := s.fineTuneTask(r.Context(), p, id, authz.View)
	if err != nil || ti.Tenant != p.Tenant {
		return ti, notFound
	}
	return ti, nil
}

func (s *Server) listFineTuningEvents(w http.ResponseWriter, r *http.Request, p principal) error {
	ti, err := s.fineTuningJobTask(r, p)
	if err != nil {
		return err
	}
	limit, err := pageLimit(r, 20, 100)
	if err != nil {
		return err
	}
	evs, err := s.fineTuneEventList(r.Context(), p, ti.ID)
	if err != nil {
		return err
	}
	slices.Reverse(evs)
	if after := r.URL.Query().Get("after"); after != "" {
		i := slices.IndexFunc(evs, func(e taskclient.FineTuneEvent) bool { return e.ID == after })
		if i < 0 {
			return paramError("after", "no event %s to list after", after)
		}
		evs = evs[i+1:]
	}
	out := FineTuningJobEventList{Object: "list", Data: []FineTuningJobEvent{}}
	for _, e := range evs {
		if len(out.Data) == limit {
			out.HasMore = true
			break
		}
		data := map[string]any{}
		if m := e.Metrics; m != nil {
			data = map[string]any{"step": m.Step, "train_loss": m.TrainLoss, "epoch": m.Epoch}
		}
		out.Data = append(out.Data, FineTuningJobEvent{
			ID: e.ID, Object: "fine_tuning.job.event", CreatedAt: e.Time.Unix(),
			Level: e.Level, Message: e.Message, Type: e.Type, Data: data,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listFineTuningCheckpoints lists the checkpoints whose files are still in
// the bucket (the newest max_keep), newest first; the final model is the
// job's fine_tuned_model, not a checkpoint.
func (s *Server) listFineTuningCheckpoints(w http.ResponseWriter, r *http.Request, p principal) error {
	ti, err := s.fineTuningJobTask(r, p)
	if err != nil {
		return err
	}
	limit, err := pageLimit(r, 10, 100)
	if err != nil {
		return err
	}
	cps, err := s.Tasks.FineTuneCheckpoints(r.Context(), ti.Tenant, ti.ID)
	if err != nil {
		return err
	}
	cps = slices.DeleteFunc(cps, func(c taskclient.FineTuneCheckpoint) bool { return c.Final || !c.Kept })
	slices.Reverse(cps)
	if after := r.URL.Query().Get("after"); after != "" {
		i := slices.IndexFunc(cps, func(c taskclient.FineTuneCheckpoint) bool { return c.ID == after })
		if i < 0 {
			return paramError("after", "no checkpoint %s to list after", after)
		}
		cps = cps[i+1:]
	}
	out := FineTuningJobCheckpointList{Object: "list", Data: []FineTuningJobCheckpoint{}}
	job := FineTuneJobIDPrefix + ti.ID
	for _, c := range cps {
		if len(out.Data) == limit {
			out.HasMore = true
			break
		}
		out.Data = append(out.Data, FineTuningJobCheckpoint{
			ID: c.ID, Object: "fine_tuning.job.checkpoint", CreatedAt: c.Time.Unix(),
			FineTunedModelCheckpoint: fmt.Sprintf("%s:ckpt-step-%d", job, c.Step), StepNumber: c.Step,
			Metrics: CheckpointMetrics{Step: float64(c.Step), TrainLoss: c.Loss}, FineTuningJobID: job,
		})
	}
	if n := len(out.Data); n > 0 {
		out.FirstID, out.LastID = &out.Data[0].ID, &out.Data[n-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
