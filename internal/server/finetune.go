package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// The form of POST /api/v1/fine-tunes (multipart/form-data): the files as
// the parts FineTuneTrainingFile and FineTuneValidationFile, every other
// setting as a field of the same name as OpenAI's.
const (
	FineTuneTrainingFile   = "training_file"
	FineTuneValidationFile = "validation_file"
)

// FineTuneSubmitted is the answer to creating a fine-tuning task: the
// task as it started, and the name its model will have.
type FineTuneSubmitted struct {
	Submitted
	FineTunedModel string `json:"fine_tuned_model"`
}

// createFineTune starts a fine-tuning task: the training file (and a
// validation file) stream to spool files and go to the bucket under the
// task's own prefix as a batch's input does; the base model is "model";
// "n_epochs", "batch_size" and "learning_rate_multiplier" are numbers or
// "auto", "seed" a number, "suffix" goes in the model's name.
func (s *Server) createFineTune(w http.ResponseWriter, r *http.Request, p principal) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return task.Errorf(task.InvalidInput, "send a fine-tuning task as multipart/form-data with a %s part", FineTuneTrainingFile)
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return task.Errorf(task.InvalidInput, "reading the form: %v", err)
	}
	extendTransfer(w)
	var req SubmitRequest
	ft := &task.FineTune{}
	tr := taskclient.SubmitRequest{FineTune: ft}
	// Both files are on disk before the task starts; each holds one of
	// the user's upload slots until then.
	var files [2]*spoolFile
	defer func() {
		for _, f := range files {
			f.remove()
		}
	}()
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return task.Errorf(task.InvalidInput, "reading the form: %v", err)
		}
		if parts == 2*maxFormParts {
			return task.Errorf(task.InvalidInput, "the form has more than %d parts", 2*maxFormParts)
		}
		name := part.FormName()
		if i := slices.Index([]string{FineTuneTrainingFile, FineTuneValidationFile}, name); i >= 0 {
			if files[i] != nil {
				return task.Errorf(task.InvalidInput, "the form has more than one %s", name)
			}
			if files[i], err = s.spool(p.User, part, MaxBatchBytes); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, 4<<10))
		if err != nil {
			return task.Errorf(task.InvalidInput, "reading the form: %v", err)
		}
		if err := setFineTuneField(&req, ft, name, strings.TrimSpace(string(b))); err != nil {
			return err
		}
	}
	if files[0] == nil {
		return task.Errorf(task.InvalidInput, "a fine-tuning task needs its %s part", FineTuneTrainingFile)
	}
	tr.File = files[0].path
	if files[1] != nil {
		tr.ValidationFile = files[1].path
	}
	sub, err := s.startTask(r.Context(), p, req, tr)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, FineTuneSubmitted{Submitted: sub, FineTunedModel: task.FineTunedName(sub.Model, sub.Tenant, ft.Suffix, sub.ID)})
	return nil
}

// setFineTuneField takes one form field of createFineTune.
func setFineTuneField(req *SubmitRequest, ft *task.FineTune, name, v string) error {
	hp := &ft.Hyperparameters
	var err error
	switch name {
	case "id":
		req.ID = v
	case "tenant":
		req.Tenant = v
	case "model":
		req.Model = v
	case "suffix":
		ft.Suffix = v
	case "priority":
		req.Priority, err = strconv.Atoi(v)
	case "seed":
		ft.Seed, err = strconv.ParseInt(v, 10, 64)
	case "n_epochs":
		err = hp.NEpochs.UnmarshalJSON(autoJSON(v))
	case "batch_size":
		err = hp.BatchSize.UnmarshalJSON(autoJSON(v))
	case "learning_rate_multiplier":
		err = hp.LearningRateMultiplier.UnmarshalJSON(autoJSON(v))
	default:
		return task.Errorf(task.InvalidInput, "unknown field %q in a fine-tuning task", name)
	}
	if err != nil {
		return task.Errorf(task.InvalidInput, "%s %q: %v", name, v, err)
	}
	return nil
}

// autoJSON is a form value as task.Auto reads it.
func autoJSON(v string) []byte {
	if v == "auto" || v == "" {
		return []byte(`"auto"`)
	}
	return []byte(v)
}
