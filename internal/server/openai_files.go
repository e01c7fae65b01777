package server

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
	"github.com/autoglm-flow/autoglm-flow/internal/taskclient"
)

// FileList is OpenAI's list of files.
type FileList struct {
	Object  string  `json:"object"`
	Data    []File  `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// maxFileList is OpenAI's bound on limit for files.list; it is also the
// default.
const maxFileList = 10000

// listFiles lists the tenant's files, newest first unless order=asc: the
// uploaded ones and the output and error files of its batches, filtered
// by purpose, paged by after (a file ID) and limit.
func (s *Server) listFiles(w http.ResponseWriter, r *http.Request, p principal) error {
	if len(p.Policy.RolesOf(p.Tenant, p.User)) == 0 {
		return task.Errorf(task.PermissionDenied, "%s has no role in tenant %s", p.User, p.Tenant)
	}
	q := r.URL.Query()
	limit := maxFileList
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxFileList {
			return paramError("limit", "limit must be a number from 1 to %d", maxFileList)
		}
		limit = n
	}
	order := q.Get("order")
	switch order {
	case "":
		order = "desc"
	case "asc", "desc":
	default:
		return paramError("order", "order must be asc or desc, not %q", order)
	}
	purpose := q.Get("purpose")
	files, err := s.tenantFiles(r, p, purpose)
	if err != nil {
		return err
	}
	slices.SortStableFunc(files, func(a, b File) int {
		if c := cmp.Compare(a.CreatedAt, b.CreatedAt); c != 0 {
			return c
		}
		if c := a.written.Compare(b.written); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if order == "desc" {
		slices.Reverse(files)
	}
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(files, func(f File) bool { return f.ID == after })
		if i < 0 {
			return paramError("after", "no file %s to list after", after)
		}
		files = files[i+1:]
	}
	out := FileList{Object: "list", Data: files}
	if len(files) > limit {
		out.Data, out.HasMore = files[:limit], true
	}
	if out.Data == nil {
		out.Data = []File{}
	}
	if n := len(out.Data); n > 0 {
		out.FirstID, out.LastID = &out.Data[0].ID, &out.Data[n-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// tenantFiles is every file of the tenant with purpose ("" for any): the
// records under the tenant's prefix, and the outputs of its batches.
func (s *Server) tenantFiles(r *http.Request, p principal, purpose string) ([]File, error) {
	var files []File
	if purpose != "batch_output" {
		dir, err := storage.Key(storage.Data, p.Tenant, "x", fileRecord)
		if err != nil {
			return nil, err
		}
		prefix := strings.TrimSuffix(dir, "x/"+fileRecord) + FileIDPrefix
		infos, err := s.Tasks.Store.List(r.Context(), prefix)
		if err != nil {
			return nil, err
		}
		for _, info := range infos {
			if storage.NameOf(info.Key) != fileRecord {
				continue
			}
			id := strings.TrimSuffix(strings.TrimPrefix(info.Key, prefix[:len(prefix)-len(FileIDPrefix)]), "/"+fileRecord)
			var f File
			if err := s.getRecord(r.Context(), p.Tenant, id, fileRecord, &f); err != nil {
				continue // deleted meanwhile
			}
			f.written = info.LastModified
			if purpose == "" || f.Purpose == purpose {
				files = append(files, f)
			}
		}
	}
	if purpose == "" || purpose == "batch_output" {
		tasks, err := s.Tasks.List(r.Context(), taskclient.ListRequest{Tenants: []string{p.Tenant}, Kind: task.KindBatch, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, t := range tasks {
			if !task.State(t.State).Final() {
				continue
			}
			for _, kind := range []string{"output", "errors"} {
				if f, err := s.file(r.Context(), p, FileIDPrefix+t.ID+"-"+kind); err == nil {
					files = append(files, f)
				}
			}
		}
	}
	return files, nil
}

// paramError is an InvalidInput error about one request parameter, which
// OpenAI's error body names in param.
func paramError(param, format string, args ...any) error {
	return &paramErr{param: param, err: task.Errorf(task.InvalidInput, format, args...)}
}

type paramErr struct {
	param string
	err   error
}

func (e *paramErr) Error() string { return e.err.Error() }
func (e *paramErr) Unwrap() error { return e.err }

// nameFile puts the user's name for a file where err names the server's
// temporary copy of it: a message about the spool file means nothing to
// the user.
func nameFile(err error, tmp, name string) error {
	if err == nil || tmp == "" || !strings.Contains(err.Error(), tmp) {
		return err
	}
	msg := strings.ReplaceAll(errMessage(err), tmp, name)
	if t := errType(err); t != "" {
		return task.Errorf(t, "%s", msg)
	}
	return errors.New(msg)
}
