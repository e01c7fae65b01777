package setup

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// BucketPolicy sets the bucket's policy from the file at path, with
// ${BUCKET} and ${WORKER_ACCESS_KEY} (from the environment) filled in:
// docker/worker-bucket-policy.json gives the worker's own account what a
// worker does and nothing more. cfg must hold the operator's credentials.
func BucketPolicy(ctx context.Context, cfg storage.Config, path string) Check {
	c := Check{What: "bucket policy " + path}
	b, err := os.ReadFile(path)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	worker := os.Getenv("WORKER_ACCESS_KEY")
	if worker == "" && strings.Contains(string(b), "${WORKER_ACCESS_KEY}") {
		c.Detail = "set WORKER_ACCESS_KEY to the worker's own access key"
		return c
	}
	doc := strings.NewReplacer("${BUCKET}", cfg.Bucket, "${WORKER_ACCESS_KEY}", worker).Replace(string(b))
	host, secure := cfg.Endpoint, !cfg.Insecure
	if h, ok := strings.CutPrefix(host, "https://"); ok {
		host, secure = h, true
	} else if h, ok := strings.CutPrefix(host, "http://"); ok {
		host, secure = h, false
	}
	mc, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""), Secure: secure, Region: cfg.Region})
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	if err := mc.SetBucketPolicy(ctx, cfg.Bucket, doc); err != nil {
		c.Detail = fmt.Sprintf("setting it: %v", err)
		return c
	}
	c.OK, c.Detail = true, "the worker "+worker+" may read, write, list and delete objects, nothing else"
	return c
}
