package storage

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// awsStore is the aws-sdk-go-v2 driver.
type awsStore struct {
	client *s3.Client
	writes
}

func openAWS(ctx context.Context, cfg Config) (*awsStore, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion(cfg.region())}
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("storage: aws config: %w", err)
	}
	var base string
	if cfg.Endpoint != "" {
		host, secure, err := cfg.endpoint()
		if err != nil {
			return nil, err
		}
		base = "https://" + host
		if !secure {
			base = "http://" + host
		}
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle || base != ""
		if base != "" {
			o.BaseEndpoint = aws.String(base)
			// Since s3 1.73 the SDK sends CRC32 checksums on every
			// request, which S3-compatible stores may reject.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	s := &awsStore{client: client, writes: newWrites(cfg)}
	s.drv = s
	return s, nil
}

// conditions are the If-None-Match and If-Match values of req.
func conditions(req request) (ifNoneMatch, ifMatch *string) {
	switch {
	case req.cond.absent:
		return aws.String("*"), nil
	case req.cond.ifMatch != "":
		return nil, aws.String(`"` + unquote(req.cond.ifMatch) + `"`)
	}
	return nil, nil
}

func (s *awsStore) putOne(ctx context.Context, req request, body []byte) (Info, error) {
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(req.key),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		ContentType: aws.String(req.contentType), Metadata: req.metadata, Tagging: tagging(req.tags),
	}
	in.IfNoneMatch, in.IfMatch = conditions(req)
	out, err := s.client.PutObject(ctx, in, signWith(req.sha256))
	if err != nil {
		return Info{}, s.writeErr(req, err)
	}
	return Info{ETag: unquote(aws.ToString(out.ETag)), VersionID: aws.ToString(out.VersionId)}, nil
}

func (s *awsStore) startMultipart(ctx context.Context, req request) (string, error) {
	out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(req.key),
		ContentType: aws.String(req.contentType), Metadata: req.metadata, Tagging: tagging(req.tags),
	})
	if err != nil {
		return "", s.writeErr(req, err)
	}
	return aws.ToString(out.UploadId), nil
}

func (s *awsStore) putPart(ctx context.Context, req request, uploadID string, n int32, body []byte, md5 string) (string, error) {
	in := &s3.UploadPartInput{
		Bucket: aws.String(s.bucket), Key: aws.String(req.key), UploadId: aws.String(uploadID),
		PartNumber: aws.Int32(n), Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
	}
	if md5 != "" {
		in.ContentMD5 = aws.String(md5)
	}
	// Unsigned payload: see uploader.putPart.
	out, err := s.client.UploadPart(ctx, in, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	if err != nil {
		return "", s.writeErr(req, err)
	}
	return aws.ToString(out.ETag), nil
}

func (s *awsStore) putPartStream(ctx context.Context, req request, uploadID string, n int32, r io.Reader, size int64) (string, error) {
	in := &s3.UploadPartInput{
		Bucket: aws.String(s.bucket), Key: aws.String(req.key), UploadId: aws.String(uploadID),
		PartNumber: aws.Int32(n), Body: r, ContentLength: aws.Int64(size),
	}
	out, err := s.client.UploadPart(ctx, in, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	if err != nil {
		return "", s.writeErr(req, err)
	}
	return aws.ToString(out.ETag), nil
}

func (s *awsStore) complete(ctx context.Context, req request, uploadID string, parts []part) (Info, error) {
	cps := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cps[i] = types.CompletedPart{PartNumber: aws.Int32(p.number), ETag: aws.String(p.etag)}
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(req.key), UploadId: aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cps},
	}
	in.IfNoneMatch, in.IfMatch = conditions(req)
	out, err := s.client.CompleteMultipartUpload(ctx, in)
	if err != nil {
		return Info{}, s.writeErr(req, err)
	}
	return Info{ETag: unquote(aws.ToString(out.ETag)), VersionID: aws.ToString(out.VersionId)}, nil
}

func (s *awsStore) abort(ctx context.Context, req request, uploadID string) error {
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(req.key), UploadId: aws.String(uploadID),
	})
	if err != nil {
		return fmt.Errorf("storage: abort upload of %s: %w", req.key, err)
	}
	return nil
}

func (s *awsStore) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	return s.GetRange(ctx, key, 0)
}

func (s *awsStore) GetRange(ctx context.Context, key string, offset int64) (io.ReadCloser, Info, error) {
	if offset < 0 {
		return nil, Info{}, fmt.Errorf("storage: get %s: negative offset %d", key, offset)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if _, status := awsCode(err); status == http.StatusRequestedRangeNotSatisfiable {
			return emptyAtEnd(ctx, s, key, offset)
		}
		return nil, Info{}, s.readErr("get", key, err)
	}
	info := Info{
		Key: key, Size: aws.ToInt64(out.ContentLength), ETag: unquote(aws.ToString(out.ETag)),
		VersionID: aws.ToString(out.VersionId), ContentType: aws.ToString(out.ContentType),
		LastModified: aws.ToTime(out.LastModified),
	}
	if total, ok := rangeTotal(aws.ToString(out.ContentRange)); ok {
		info.Size = total
	}
	info.Metadata, info.SHA256 = userMetadata(out.Metadata)
	return out.Body, info, nil
}

func (s *awsStore) Stat(ctx context.Context, key string) (Info, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return Info{}, s.readErr("stat", key, err)
	}
	info := Info{
		Key: key, Size: aws.ToInt64(out.ContentLength), ETag: unquote(aws.ToString(out.ETag)),
		VersionID: aws.ToString(out.VersionId), ContentType: aws.ToString(out.ContentType),
		LastModified: aws.ToTime(out.LastModified),
	}
	info.Metadata, info.SHA256 = userMetadata(out.Metadata)
	return info, nil
}

func (s *awsStore) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.readErr("list", prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, Info{
				Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size),
				ETag: unquote(aws.ToString(o.ETag)), LastModified: aws.ToTime(o.LastModified),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *awsStore) Versions(ctx context.Context, key string) ([]Info, error) {
	var out []Info
	p := s3.NewListObjectVersionsPaginator(s.client, &s3.ListObjectVersionsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(key)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.readErr("list versions of", key, err)
		}
		for _, v := range page.Versions {
			if aws.ToString(v.Key) != key {
				continue
			}
			out = append(out, Info{
				Key: key, Size: aws.ToInt64(v.Size), ETag: unquote(aws.ToString(v.ETag)),
				VersionID: aws.ToString(v.VersionId), LastModified: aws.ToTime(v.LastModified),
			})
		}
	}
	return out, nil
}

func (s *awsStore) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return s.readErr("delete", key, err)
	}
	return nil
}

func (s *awsStore) ensureBucket(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if _, status := awsCode(err); status == http.StatusNotFound {
		in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
		if s.region != defaultRegion {
			// us-east-1 is the one region S3 refuses to be named in.
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(s.region)}
		}
		_, err = s.client.CreateBucket(ctx, in)
		if code, _ := awsCode(err); code == "BucketAlreadyOwnedByYou" {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("storage: bucket %s: %w", s.bucket, err)
	}
	// Read first: a worker's least-privilege account may read the
	// versioning state but not change it, and setup already turned it on.
	if v, verr := s.client.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(s.bucket)}); verr == nil && v.Status == types.BucketVersioningStatusEnabled {
		return nil
	}
	_, err = s.client.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(s.bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
	})
	if err != nil {
		return fmt.Errorf("storage: enable versioning on %s: %w", s.bucket, err)
	}
	return nil
}

func (s *awsStore) writeErr(req request, err error) error {
	code, status := awsCode(err)
	return classifyWrite(s.bucket, req, status, code, err)
}

func (s *awsStore) readErr(op, key string, err error) error {
	code, status := awsCode(err)
	return classifyRead(op, s.bucket, key, status, code, err)
}

// awsCode is the S3 error code and HTTP status of err, when it has them.
func awsCode(err error) (code string, status int) {
	if err == nil {
		return "", 0
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return code, status
}

// signWith signs a request with the payload sha256 write computed, so the
// SDK does not hash the body again (over plain HTTP it would) and the
// server checks the body against it (over HTTPS it would not).
func signWith(sha256Hex string) func(*s3.Options) {
	return s3.WithAPIOptions(func(stack *middleware.Stack) error {
		if sha256Hex == "" {
			return nil
		}
		return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("autoglmPayloadHash",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				return next.HandleFinalize(v4.SetPayloadHash(ctx, sha256Hex), in)
			}), "ComputePayloadHash", middleware.Before)
	})
}

// tagging is tags as the x-amz-tagging header wants them: a URL query.
func tagging(tags map[string]string) *string {
	if len(tags) == 0 {
		return nil
	}
	v := url.Values{}
	for k, t := range tags {
		v.Set(k, t)
	}
	return aws.String(v.Encode())
}

func (s *awsStore) defaultPartSize() int64 { return s.partSize }

func (s *awsStore) listParts(ctx context.Context, req request, uploadID string) ([]listedPart, error) {
	var out []listedPart
	p := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{Bucket: aws.String(s.bucket), Key: aws.String(req.key), UploadId: aws.String(uploadID)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			if code, status := awsCode(err); code == "NoSuchUpload" || status == http.StatusNotFound {
				return nil, errNoUpload
			}
			return nil, fmt.Errorf("storage: list parts of %s: %w", req.key, err)
		}
		for _, pt := range page.Parts {
			out = append(out, listedPart{number: aws.ToInt32(pt.PartNumber), etag: unquote(aws.ToString(pt.ETag)), size: aws.ToInt64(pt.Size)})
		}
	}
	return out, nil
}

func (s *awsStore) listPage(ctx context.Context, prefix, after string, limit int) ([]Info, bool, error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix), MaxKeys: aws.Int32(int32(limit))}
	if after != "" {
		in.StartAfter = aws.String(after)
	}
	page, err := s.client.ListObjectsV2(ctx, in)
	if err != nil {
		return nil, false, s.readErr("list", prefix, err)
	}
	out := make([]Info, 0, len(page.Contents))
	for _, o := range page.Contents {
		out = append(out, Info{
			Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size),
			ETag: unquote(aws.ToString(o.ETag)), LastModified: aws.ToTime(o.LastModified),
		})
	}
	return out, aws.ToBool(page.IsTruncated), nil
}

func (s *awsStore) lifecycleConfig(ctx context.Context) ([]types.LifecycleRule, error) {
	out, err := s.client.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(s.bucket)})
	if code, _ := awsCode(err); code == "NoSuchLifecycleConfiguration" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return out.Rules, nil
}

func (s *awsStore) replaceRules(ctx context.Context, rules []LifecycleRule) error {
	have, err := s.lifecycleConfig(ctx)
	if err != nil {
		return err
	}
	have = slices.DeleteFunc(have, func(r types.LifecycleRule) bool { return ours(aws.ToString(r.ID)) })
	for _, r := range rules {
		lr := types.LifecycleRule{
			ID: aws.String(r.ID), Status: types.ExpirationStatusDisabled,
			Filter: &types.LifecycleRuleFilter{},
		}
		if r.Days > 0 {
			lr.Expiration = &types.LifecycleExpiration{Days: aws.Int32(int32(r.Days))}
		}
		if r.AbortMultipartDays > 0 {
			lr.AbortIncompleteMultipartUpload = &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(int32(r.AbortMultipartDays))}
		}
		if r.Enabled {
			lr.Status = types.ExpirationStatusEnabled
		}
		if r.NoncurrentDays > 0 {
			lr.NoncurrentVersionExpiration = &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(int32(r.NoncurrentDays))}
		}
		if r.TagKey != "" {
			lr.Filter.Tag = &types.Tag{Key: aws.String(r.TagKey), Value: aws.String(r.TagValue)}
		} else {
			lr.Filter.Prefix = aws.String(r.Prefix)
		}
		have = append(have, lr)
	}
	if len(have) == 0 {
		_, err := s.client.DeleteBucketLifecycle(ctx, &s3.DeleteBucketLifecycleInput{Bucket: aws.String(s.bucket)})
		return err
	}
	_, err = s.client.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: aws.String(s.bucket), LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: have},
	})
	return err
}

func (s *awsStore) lifecycleRules(ctx context.Context) ([]LifecycleRule, error) {
	have, err := s.lifecycleConfig(ctx)
	if err != nil {
		return nil, err
	}
	var out []LifecycleRule
	for _, r := range have {
		lr := LifecycleRule{ID: aws.ToString(r.ID), Enabled: r.Status == types.ExpirationStatusEnabled}
		if r.Expiration != nil {
			lr.Days = int(aws.ToInt32(r.Expiration.Days))
		}
		if r.NoncurrentVersionExpiration != nil {
			lr.NoncurrentDays = int(aws.ToInt32(r.NoncurrentVersionExpiration.NoncurrentDays))
		}
		if r.AbortIncompleteMultipartUpload != nil {
			lr.AbortMultipartDays = int(aws.ToInt32(r.AbortIncompleteMultipartUpload.DaysAfterInitiation))
		}
		if f := r.Filter; f != nil {
			lr.Prefix = aws.ToString(f.Prefix)
			if f.Tag != nil {
				lr.TagKey, lr.TagValue = aws.ToString(f.Tag.Key), aws.ToString(f.Tag.Value)
			}
			if f.And != nil {
				lr.Prefix = cmp.Or(lr.Prefix, aws.ToString(f.And.Prefix))
				if lr.TagKey == "" && len(f.And.Tags) > 0 {
					lr.TagKey, lr.TagValue = aws.ToString(f.And.Tags[0].Key), aws.ToString(f.And.Tags[0].Value)
				}
			}
		}
		out = append(out, lr)
	}
	return out, nil
}
