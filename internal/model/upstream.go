// Package model brings models in: the upstream a model is mirrored from
// (a Hugging Face-style hub or a plain HTTP folder with a manifest), and
// the cache a node keeps of mirrored models.
package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// DefaultHubURL is the Hugging Face hub; AUTOGLM_HF_ENDPOINT (or HF_ENDPOINT,
// as the huggingface_hub library reads it) points at a mirror of it.
const DefaultHubURL = "https://huggingface.co"

// Upstream is where models are mirrored from.
type Upstream struct {
	// HubURL is the base of a Hugging Face-style hub.
	HubURL string
	// HTTPURL is the base of a plain HTTP folder of models, each with a
	// manifest.json; empty turns that kind off.
	HTTPURL string
	// Token is sent as Authorization: Bearer (gated and private repos).
	Token string
	// Client is the HTTP client; nil is one with no overall timeout, since
	// a model file can take long: reads are bounded by the activity's
	// heartbeat instead.
	Client *http.Client
}

// UpstreamFromEnv reads AUTOGLM_HF_ENDPOINT (or HF_ENDPOINT),
// AUTOGLM_MODELS_HTTP_URL and the token AUTOGLM_HF_TOKEN (or HF_TOKEN, or
// the file AUTOGLM_HF_TOKEN_FILE names).
func UpstreamFromEnv() (Upstream, error) {
	u := Upstream{HubURL: firstEnv("AUTOGLM_HF_ENDPOINT", "HF_ENDPOINT"), HTTPURL: os.Getenv("AUTOGLM_MODELS_HTTP_URL")}
	if u.HubURL == "" {
		u.HubURL = DefaultHubURL
	}
	u.Token = firstEnv("AUTOGLM_HF_TOKEN", "HF_TOKEN")
	if path := os.Getenv("AUTOGLM_HF_TOKEN_FILE"); u.Token == "" && path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return u, fmt.Errorf("model: AUTOGLM_HF_TOKEN_FILE: %w", err)
		}
		u.Token = strings.TrimSpace(string(b))
	}
	return u, nil
}

func firstEnv(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

func (u Upstream) client() *http.Client {
	if u.Client != nil {
		return u.Client
	}
	return &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute, MaxIdleConnsPerHost: 8,
	}}
}

// List resolves a revision to its commit and lists its files with their
// sizes and sha256 (see ParseHubRevision and ParseManifest for what is
// refused). A plain HTTP folder has one revision, whatever is asked.
func (u Upstream) List(ctx context.Context, kind, repo, revision string) (Listing, error) {
	if kind == task.UpstreamHTTP {
		if u.HTTPURL == "" {
			return Listing{}, task.Errorf(task.InvalidInput, "no plain HTTP model upstream is configured (AUTOGLM_MODELS_HTTP_URL)")
		}
		b, err := u.get(ctx, u.HTTPURL+"/"+repo+"/manifest.json")
		if err != nil {
			return Listing{}, err
		}
		return ParseManifest(b)
	}
	b, err := u.get(ctx, fmt.Sprintf("%s/api/models/%s/revision/%s?blobs=true", u.HubURL, repo, url.PathEscape(revision)))
	if err != nil {
		return Listing{}, err
	}
	return ParseHubRevision(b)
}

// FileURL is where a file of a revision is downloaded from.
func (u Upstream) FileURL(kind, repo, revision, file string) string {
	esc := (&url.URL{Path: file}).EscapedPath()
	if kind == task.UpstreamHTTP {
		return u.HTTPURL + "/" + repo + "/" + esc
	}
	return fmt.Sprintf("%s/%s/resolve/%s/%s", u.HubURL, repo, url.PathEscape(revision), esc)
}

// Open streams a file from byte offset on (a Range request). Resumed
// tells whether the upstream honoured the range; if it did not, the body
// starts at byte 0 and the caller starts over.
func (u Upstream) Open(ctx context.Context, fileURL string, offset int64) (body io.ReadCloser, resumed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fileURL, nil)
	if err != nil {
		return nil, false, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	u.authorize(req)
	resp, err := u.client().Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("model: %s: %w", redact(fileURL), err)
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		return resp.Body, true, nil
	case resp.StatusCode == http.StatusOK:
		return resp.Body, false, nil
	}
	defer resp.Body.Close()
	return nil, false, statusError(resp, fileURL)
}

// maxListingBytes bounds an upstream's JSON answer.
const maxListingBytes = 64 << 20

// get reads a JSON answer of at most maxListingBytes.
func (u Upstream) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	u.authorize(req)
	resp, err := u.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("model: %s: %w", redact(url), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, url)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxListingBytes+1))
	if err != nil {
		return nil, fmt.Errorf("model: %s: %w", redact(url), err)
	}
	if len(b) > maxListingBytes {
		return nil, task.Errorf(task.ScreeningFailed, "model: %s answered more than %d bytes", redact(url), maxListingBytes)
	}
	return b, nil
}

func (u Upstream) getJSON(ctx context.Context, url string, v any) error {
	b, err := u.get(ctx, url)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("model: %s: %w", redact(url), err)
	}
	return nil
}

func (u Upstream) authorize(req *http.Request) {
	if u.Token != "" {
		req.Header.Set("Authorization", "Bearer "+u.Token)
	}
}

// statusError classifies an upstream's answer: what cannot get better by
// retrying (no such repo, no access) is a typed error; the rest retries.
func statusError(resp *http.Response, url string) error {
	msg := fmt.Sprintf("model: %s answered %s", redact(url), resp.Status)
	switch resp.StatusCode {
	case http.StatusNotFound:
		return task.Errorf(task.NotFound, "%s", msg)
	case http.StatusUnauthorized, http.StatusForbidden:
		return task.Errorf(task.PermissionDenied, "%s (is the token AUTOGLM_HF_TOKEN set and allowed?)", msg)
	case http.StatusRequestedRangeNotSatisfiable:
		return errRangeNotSatisfiable
	}
	return errors.New(msg)
}

// errRangeNotSatisfiable: the staged part is as long as the file or longer
// (the file changed upstream); the download starts over.
var errRangeNotSatisfiable = errors.New("model: range not satisfiable")

// redact drops the query, which may hold a signed CDN URL's credentials.
func redact(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i]
	}
	return raw
}

// RepoInfo is what screening reads of a repo: its licence.
type RepoInfo struct {
	Licence string `json:"licence"`
}

// Info reads a hub repo's licence from its model card data. A plain HTTP
// folder gives it in its manifest.json.
func (u Upstream) Info(ctx context.Context, kind, repo, revision string) (RepoInfo, error) {
	var v struct {
		CardData struct {
			License string `json:"license"`
		} `json:"cardData"`
		License string `json:"license"`
	}
	url := fmt.Sprintf("%s/api/models/%s/revision/%s", u.HubURL, repo, revision)
	if kind == task.UpstreamHTTP {
		url = u.HTTPURL + "/" + repo + "/manifest.json"
	}
	if err := u.getJSON(ctx, url, &v); err != nil {
		return RepoInfo{}, err
	}
	return RepoInfo{Licence: firstNonEmpty(v.CardData.License, v.License)}, nil
}

// Head reads the first n bytes of a file, for the security audit to
// recognise its format by its content, and the sha256 the upstream
// reports for it (X-Linked-Etag, as the hub sends for LFS files).
func (u Upstream) Head(ctx context.Context, fileURL string, n int64) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fileURL, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", n-1))
	u.authorize(req)
	resp, err := u.client().Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("model: %s: %w", redact(fileURL), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return nil, "", statusError(resp, fileURL)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, n))
	return b, strings.Trim(resp.Header.Get("X-Linked-Etag"), `"`), err
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
