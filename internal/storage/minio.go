package storage

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/lifecycle"
)

// minioStore is the minio-go driver.
type minioStore struct {
	core *minio.Core
	writes
}

func openMinIO(cfg Config) (*minioStore, error) {
	host, secure, err := cfg.endpoint()
	if err != nil {
		return nil, err
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, fmt.Errorf("storage: driver minio needs AccessKey and SecretKey (driver aws can use the AWS credential chain)")
	}
	core, err := minio.NewCore(host, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: secure,
		Region: cfg.region(), // spares a GetBucketLocation per bucket
	})
	if err != nil {
		return nil, fmt.Errorf("storage: minio client: %w", err)
	}
	s := &minioStore{core: core, writes: newWrites(cfg)}
	s.drv = s
	return s, nil
}

// putOptions carries the object's headers and, when withCond, the
// precondition.
func (s *minioStore) putOptions(req request, withCond bool) minio.PutObjectOptions {
	o := minio.PutObjectOptions{ContentType: req.contentType, UserMetadata: req.metadata, UserTags: req.tags, DisableMultipart: true}
	if withCond {
		switch {
		case req.cond.absent:
			o.SetMatchETagExcept("*")
		case req.cond.ifMatch != "":
			o.SetMatchETag(unquote(req.cond.ifMatch))
		}
	}
	return o
}

func (s *minioStore) putOne(ctx context.Context, req request, body []byte) (Info, error) {
	o := s.putOptions(req, true)
	if req.sha256 != "" {
		// Sign with the digest write computed: the server checks the body
		// against it, and minio-go does not hash the body a second time
		// (over plain HTTP it would, for its streaming signature).
		o.DisableContentSha256 = true
	}
	ui, err := s.core.PutObject(ctx, s.bucket, req.key, bytes.NewReader(body), int64(len(body)), "", req.sha256, o)
	if err != nil {
		return Info{}, s.writeErr(req, err)
	}
	return Info{ETag: unquote(ui.ETag), VersionID: ui.VersionID}, nil
}

func (s *minioStore) startMultipart(ctx context.Context, req request) (string, error) {
	// MinIO also checks the precondition here, which fails a doomed upload
	// before its parts are sent; complete checks it again, atomically.
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, req.key, s.putOptions(req, true))
	if err != nil {
		return "", s.writeErr(req, err)
	}
	return id, nil
}

func (s *minioStore) putPart(ctx context.Context, req request, uploadID string, n int32, body []byte, md5 string) (string, error) {
	// Unsigned payload: see uploader.putPart.
	p, err := s.core.PutObjectPart(ctx, s.bucket, req.key, uploadID, int(n), bytes.NewReader(body), int64(len(body)), minio.PutObjectPartOptions{Md5Base64: md5, DisableContentSha256: true})
	if err != nil {
		return "", s.writeErr(req, err)
	}
	return p.ETag, nil
}

func (s *minioStore) putPartStream(ctx context.Context, req request, uploadID string, n int32, r io.Reader, size int64) (string, error) {
	p, err := s.core.PutObjectPart(ctx, s.bucket, req.key, uploadID, int(n), r, size, minio.PutObjectPartOptions{DisableContentSha256: true})
	if err != nil {
		return "", s.writeErr(req, err)
	}
	return p.ETag, nil
}

func (s *minioStore) complete(ctx context.Context, req request, uploadID string, parts []part) (Info, error) {
	cps := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		cps[i] = minio.CompletePart{PartNumber: int(p.number), ETag: p.etag}
	}
	var o minio.PutObjectOptions
	switch {
	case req.cond.absent:
		o.SetMatchETagExcept("*")
	case req.cond.ifMatch != "":
		o.SetMatchETag(unquote(req.cond.ifMatch))
	}
	ui, err := s.core.CompleteMultipartUpload(ctx, s.bucket, req.key, uploadID, cps, o)
	if err != nil {
		return Info{}, s.writeErr(req, err)
	}
	return Info{ETag: unquote(ui.ETag), VersionID: ui.VersionID}, nil
}

func (s *minioStore) abort(ctx context.Context, req request, uploadID string) error {
	if err := s.core.AbortMultipartUpload(ctx, s.bucket, req.key, uploadID); err != nil {
		return fmt.Errorf("storage: abort upload of %s: %w", req.key, err)
	}
	return nil
}

func (s *minioStore) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	return s.GetRange(ctx, key, 0)
}

func (s *minioStore) GetRange(ctx context.Context, key string, offset int64) (io.ReadCloser, Info, error) {
	var o minio.GetObjectOptions
	if offset < 0 {
		return nil, Info{}, fmt.Errorf("storage: get %s: negative offset %d", key, offset)
	}
	if offset > 0 {
		if err := o.SetRange(offset, 0); err != nil {
			return nil, Info{}, err
		}
	}
	rc, oi, h, err := s.core.GetObject(ctx, s.bucket, key, o)
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return emptyAtEnd(ctx, s, key, offset)
		}
		return nil, Info{}, s.readErr("get", key, err)
	}
	info := minioInfo(oi)
	if total, ok := rangeTotal(h.Get("Content-Range")); ok {
		info.Size = total
	}
	return rc, info, nil
}

func (s *minioStore) Stat(ctx context.Context, key string) (Info, error) {
	oi, err := s.core.Client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s.readErr("stat", key, err)
	}
	return minioInfo(oi), nil
}

func (s *minioStore) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	for oi := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.readErr("list", prefix, oi.Err)
		}
		out = append(out, Info{Key: oi.Key, Size: oi.Size, ETag: unquote(oi.ETag), LastModified: oi.LastModified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *minioStore) Versions(ctx context.Context, key string) ([]Info, error) {
	var out []Info
	for oi := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: key, Recursive: true, WithVersions: true}) {
		if oi.Err != nil {
			return nil, s.readErr("list versions of", key, oi.Err)
		}
		if oi.Key != key || oi.IsDeleteMarker {
			continue
		}
		out = append(out, Info{Key: oi.Key, Size: oi.Size, ETag: unquote(oi.ETag), VersionID: oi.VersionID, LastModified: oi.LastModified})
	}
	return out, nil
}

func (s *minioStore) Delete(ctx context.Context, key string) error {
	if err := s.core.Client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.readErr("delete", key, err)
	}
	return nil
}

func (s *minioStore) ensureBucket(ctx context.Context) error {
	ok, err := s.core.Client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("storage: bucket %s: %w", s.bucket, err)
	}
	if !ok {
		err := s.core.Client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
		if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
			return fmt.Errorf("storage: create bucket %s: %w", s.bucket, err)
		}
	}
	// Read first: a worker's least-privilege account may read the
	// versioning state but not change it, and setup already turned it on.
	if vc, err := s.core.Client.GetBucketVersioning(ctx, s.bucket); err == nil && vc.Enabled() {
		return nil
	}
	if err := s.core.Client.EnableVersioning(ctx, s.bucket); err != nil {
		return fmt.Errorf("storage: enable versioning on %s: %w", s.bucket, err)
	}
	return nil
}

// writeErr turns a failed write into ErrConflict when its precondition
// failed.
func (s *minioStore) writeErr(req request, err error) error {
	resp := minio.ToErrorResponse(err)
	return classifyWrite(s.bucket, req, resp.StatusCode, resp.Code, err)
}

// readErr turns a failed read into ErrNotFound when the key is missing.
func (s *minioStore) readErr(op, key string, err error) error {
	resp := minio.ToErrorResponse(err)
	return classifyRead(op, s.bucket, key, resp.StatusCode, resp.Code, err)
}

func minioInfo(oi minio.ObjectInfo) Info {
	info := Info{
		Key: oi.Key, Size: oi.Size, ETag: unquote(oi.ETag), VersionID: oi.VersionID,
		ContentType: oi.ContentType, LastModified: oi.LastModified,
	}
	info.Metadata, info.SHA256 = userMetadata(oi.UserMetadata)
	return info
}

func (s *minioStore) defaultPartSize() int64 { return s.partSize }

func (s *minioStore) listParts(ctx context.Context, req request, uploadID string) ([]listedPart, error) {
	var out []listedPart
	for marker := 0; ; {
		res, err := s.core.ListObjectParts(ctx, s.bucket, req.key, uploadID, marker, 1000)
		if err != nil {
			if resp := minio.ToErrorResponse(err); resp.Code == "NoSuchUpload" || resp.StatusCode == http.StatusNotFound {
				return nil, errNoUpload
			}
			return nil, fmt.Errorf("storage: list parts of %s: %w", req.key, err)
		}
		for _, p := range res.ObjectParts {
			out = append(out, listedPart{number: int32(p.PartNumber), etag: unquote(p.ETag), size: p.Size})
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return out, nil
		}
		marker = res.NextPartNumberMarker
	}
}

func (s *minioStore) listPage(ctx context.Context, prefix, after string, limit int) ([]Info, bool, error) {
	res, err := s.core.ListObjectsV2(s.bucket, prefix, after, "", "", limit)
	if err != nil {
		return nil, false, s.readErr("list", prefix, err)
	}
	out := make([]Info, 0, len(res.Contents))
	for _, oi := range res.Contents {
		out = append(out, Info{Key: oi.Key, Size: oi.Size, ETag: unquote(oi.ETag), LastModified: oi.LastModified})
	}
	return out, res.IsTruncated, nil
}

func (s *minioStore) lifecycleConfig(ctx context.Context) (*lifecycle.Configuration, error) {
	cfg, err := s.core.Client.GetBucketLifecycle(ctx, s.bucket)
	if resp := minio.ToErrorResponse(err); resp.Code == "NoSuchLifecycleConfiguration" {
		return lifecycle.NewConfiguration(), nil
	}
	return cfg, err
}

func (s *minioStore) replaceRules(ctx context.Context, rules []LifecycleRule) error {
	cfg, err := s.lifecycleConfig(ctx)
	if err != nil {
		return err
	}
	cfg.Rules = slices.DeleteFunc(cfg.Rules, func(r lifecycle.Rule) bool { return ours(r.ID) })
	for _, r := range rules {
		lr := lifecycle.Rule{
			ID: r.ID, Status: "Disabled",
			Expiration: lifecycle.Expiration{Days: lifecycle.ExpirationDays(r.Days)},
		}
		if r.Enabled {
			lr.Status = "Enabled"
		}
		if r.NoncurrentDays > 0 {
			lr.NoncurrentVersionExpiration.NoncurrentDays = lifecycle.ExpirationDays(r.NoncurrentDays)
		}
		if r.AbortMultipartDays > 0 {
			lr.AbortIncompleteMultipartUpload.DaysAfterInitiation = lifecycle.ExpirationDays(r.AbortMultipartDays)
		}
		if r.TagKey != "" {
			lr.RuleFilter.Tag = lifecycle.Tag{Key: r.TagKey, Value: r.TagValue}
		} else {
			lr.RuleFilter.Prefix = r.Prefix
		}
		cfg.Rules = append(cfg.Rules, lr)
	}
	return s.core.Client.SetBucketLifecycle(ctx, s.bucket, cfg)
}

func (s *minioStore) lifecycleRules(ctx context.Context) ([]LifecycleRule, error) {
	cfg, err := s.lifecycleConfig(ctx)
	if err != nil {
		return nil, err
	}
	var out []LifecycleRule
	for _, r := range cfg.Rules {
		lr := LifecycleRule{
			ID: r.ID, Prefix: r.RuleFilter.Prefix, TagKey: r.RuleFilter.Tag.Key, TagValue: r.RuleFilter.Tag.Value,
			Days: int(r.Expiration.Days), NoncurrentDays: int(r.NoncurrentVersionExpiration.NoncurrentDays),
			AbortMultipartDays: int(r.AbortIncompleteMultipartUpload.DaysAfterInitiation),
			Enabled:            r.Status == "Enabled",
		}
		if lr.Prefix == "" {
			lr.Prefix = cmp.Or(r.RuleFilter.And.Prefix, r.Prefix)
		}
		if lr.TagKey == "" && len(r.RuleFilter.And.Tags) > 0 {
			lr.TagKey, lr.TagValue = r.RuleFilter.And.Tags[0].Key, r.RuleFilter.And.Tags[0].Value
		}
		out = append(out, lr)
	}
	return out, nil
}
