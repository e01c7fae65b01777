package apiclient

import (
	"context"
	"io"
	"mime/multipart"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// FineTune starts a fine-tuning task: r.File is the training file,
// r.ValidationFile the optional validation file, both streamed to the
// server as parts of a multipart form; r.FineTune holds the rest.
func (c *Client) FineTune(ctx context.Context, r taskclient.SubmitRequest) (server.FineTuneSubmitted, error) {
	var sub server.FineTuneSubmitted
	if r.File == "" || r.FineTune == nil {
		return sub, task.Errorf(task.InvalidInput, "a fine-tuning task needs its training file")
	}
	// Open both first, so a missing file is an error before any request.
	files := map[string]*os.File{}
	for name, path := range map[string]string{server.FineTuneTrainingFile: r.File, server.FineTuneValidationFile: r.ValidationFile} {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return sub, task.Errorf(task.InvalidInput, "%v", err)
		}
		defer f.Close()
		files[name] = f
	}
	ft := r.FineTune
	fields := [][2]string{{"id", r.ID}, {"tenant", r.Tenant}, {"model", r.Model}, {"suffix", ft.Suffix}}
	if r.Priority != 0 {
		fields = append(fields, [2]string{"priority", strconv.Itoa(r.Priority)})
	}
	fields = append(fields, [2]string{"seed", strconv.FormatInt(ft.Seed, 10)})
	for name, v := range map[string]task.Auto{"n_epochs": ft.Hyperparameters.NEpochs, "batch_size": ft.Hyperparameters.BatchSize, "learning_rate_multiplier": ft.Hyperparameters.LearningRateMultiplier} {
		if v.Set {
			fields = append(fields, [2]string{name, strconv.FormatFloat(v.Value, 'g', -1, 64)})
		}
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(writeForm(mw, fields, files))
	}()
	_, err := c.do(ctx, "POST", "/api/v1/fine-tunes", pr, mw.FormDataContentType(), &sub)
	pr.CloseWithError(io.ErrClosedPipe)
	return sub, err
}

// writeForm writes the fields, then the files, and closes the form.
func writeForm(mw *multipart.Writer, fields [][2]string, files map[string]*os.File) error {
	for _, f := range fields {
		if f[1] == "" {
			continue
		}
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return err
		}
	}
	for _, name := range []string{server.FineTuneTrainingFile, server.FineTuneValidationFile} {
		f := files[name]
		if f == nil {
			continue
		}
		w, err := mw.CreateFormFile(name, f.Name())
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
	}
	return mw.Close()
}

func fineTunePath(id string, rest ...string) string {
	return "/api/v1/fine-tunes/" + url.PathEscape(id) + strings.Join(rest, "")
}

// FineTuneEvents are every event of fine-tuning task id, oldest first:
// its transitions and its loss curve, read page by page.
func (c *Client) FineTuneEvents(ctx context.Context, id string) ([]taskclient.FineTuneEvent, error) {
	var all []taskclient.FineTuneEvent
	after := ""
	for {
		var page server.FineTuneEvents
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		if _, err := c.do(ctx, "GET", fineTunePath(id, "/events?", q.Encode()), nil, "", &page); err != nil {
			return nil, err
		}
		all = append(all, page.Events...)
		if !page.HasMore || len(page.Events) == 0 {
			return all, nil
		}
		after = page.Events[len(page.Events)-1].ID
	}
}

// FineTuneCheckpoints are the committed checkpoints of fine-tuning task
// id, oldest first.
func (c *Client) FineTuneCheckpoints(ctx context.Context, id string) ([]taskclient.FineTuneCheckpoint, error) {
	var out server.FineTuneCheckpoints
	_, err := c.do(ctx, "GET", fineTunePath(id, "/checkpoints"), nil, "", &out)
	return out.Checkpoints, err
}

// DecideFineTune pauses, resumes or cancels fine-tuning task id; any
// other task is not found.
func (c *Client) DecideFineTune(ctx context.Context, id, action string, body server.DecisionBody) (server.TaskStatus, error) {
	var st server.TaskStatus
	_, err := c.do(ctx, "POST", fineTunePath(id, "/", action), jsonBody(body), "application/json", &st)
	return st, err
}
