package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/server"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Large files go up through the server's Uploads API in parts: a network
// cut costs the part that was on its way, which is sent again, not the
// file.
const (
	// DefaultPartSize is the size of one part.
	DefaultPartSize = 16 << 20
	// partTries is how often one part is sent before the upload gives up.
	partTries = 5
)

// largeFile says whether the file at path goes up in parts: more than two
// parts' worth.
func (c *Client) largeFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() > 2*c.partSize()
}

func (c *Client) partSize() int64 {
	if c.PartSize > 0 {
		return c.PartSize
	}
	return DefaultPartSize
}

// uploadParts sends the file at path in parts and returns the ID of the
// file it becomes on the server: purpose "batch" for a batch file,
// "user_data" for an attachment.
func (c *Client) uploadParts(ctx context.Context, path, purpose string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", task.Errorf(task.InvalidInput, "%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", task.Errorf(task.InvalidInput, "%v", err)
	}
	var up server.Upload
	if err := c.openai(ctx, "/v1/uploads", jsonBody(server.CreateUploadRequest{
		Filename: filepath.Base(path), Purpose: purpose, Bytes: fi.Size(),
	}), "application/json", &up); err != nil {
		return "", fmt.Errorf("starting the upload of %s: %w", path, err)
	}
	var ids []string
	for off := int64(0); off < fi.Size(); off += c.partSize() {
		id, err := c.sendPart(ctx, up.ID, io.NewSectionReader(f, off, min(c.partSize(), fi.Size()-off)))
		if err != nil {
			_ = c.openai(context.WithoutCancel(ctx), "/v1/uploads/"+up.ID+"/cancel", nil, "", nil)
			return "", fmt.Errorf("uploading %s (at byte %d of %d): %w", path, off, fi.Size(), err)
		}
		ids = append(ids, id)
	}
	if err := c.openai(ctx, "/v1/uploads/"+up.ID+"/complete", jsonBody(server.CompleteUploadRequest{PartIDs: ids}), "application/json", &up); err != nil {
		return "", fmt.Errorf("completing the upload of %s: %w", path, err)
	}
	if up.File == nil {
		return "", fmt.Errorf("the server completed the upload of %s without a file", path)
	}
	return up.File.ID, nil
}

// sendPart sends one part, again after a network error or a 5xx, with a
// growing pause between tries.
func (c *Client) sendPart(ctx context.Context, uploadID string, part *io.SectionReader) (string, error) {
	var last error
	for try := 0; try < partTries; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Duration(1<<(try-1)) * time.Second):
			}
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		w, _ := mw.CreateFormFile("data", "part")
		if _, err := io.Copy(w, io.NewSectionReader(part, 0, part.Size())); err != nil {
			return "", err
		}
		mw.Close()
		var p server.UploadPart
		err := c.openai(ctx, "/v1/uploads/"+uploadID+"/parts", &body, mw.FormDataContentType(), &p)
		if err == nil {
			return p.ID, nil
		}
		var se *statusError
		if errors.As(err, &se) && se.code < 500 {
			return "", err
		}
		last = err
	}
	return "", last
}

// statusError is an answer of the OpenAI API with its status code.
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// openai POSTs to a route of the server's OpenAI API, whose errors have
// OpenAI's shape, and turns them into the project's error types.
func (c *Client) openai(ctx context.Context, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "POST", c.BaseURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("calling the autoglm server at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e server.OpenAIError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		msg := fmt.Sprintf("the autoglm server answered %s", resp.Status)
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		t := map[int]task.ErrorType{
			http.StatusBadRequest: task.InvalidInput, http.StatusUnauthorized: task.PermissionDenied,
			http.StatusForbidden: task.PermissionDenied, http.StatusNotFound: task.NotFound,
			http.StatusConflict: task.WrongState, http.StatusTooManyRequests: task.RateLimited,
		}[resp.StatusCode]
		if t == "" {
			return &statusError{code: resp.StatusCode, err: errors.New(msg)}
		}
		return &statusError{code: resp.StatusCode, err: &task.Error{Type: t, Msg: msg}}
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
