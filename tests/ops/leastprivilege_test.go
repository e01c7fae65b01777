package ops

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

// The worker's bucket credentials in docker/ are least-privilege: on
// versitygw (the compose file's S3 store), an account made for the worker
// and granted docker/worker-bucket-policy.json can do what a worker does
// (create, replace, read, list, delete, tag objects in its bucket) and
// nothing an operator does (create buckets, change the policy or the
// lifecycle, reach another bucket).
func TestWorkerBucketCredentialsAreLeastPrivilege(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	v, err := devstack.StartVersity(ctx, devstack.Options{Dir: filepath.Join(suite.Dir, "versity-lp"), BinDir: suite.Bin, Buckets: []string{bucket, "other"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Stop() })
	const workerKey, workerSecret = "autoglm-worker", "worker-secret-1234"
	admin := exec.CommandContext(ctx, filepath.Join(suite.Bin, "versitygw"), "admin",
		"--er", "http://"+v.S3Endpoint, "create-user", "-a", workerKey, "-s", workerSecret, "-r", "user")
	admin.Env = append(os.Environ(), "ADMIN_ACCESS_KEY="+v.AccessKey, "ADMIN_SECRET_KEY="+v.SecretKey)
	if out, err := admin.CombinedOutput(); err != nil {
		t.Fatalf("creating the worker's account: %v\n%s", err, out)
	}
	// The operator's `autoglm setup`, with the root credentials, sets the
	// policy docker/ uses; versitygw has no lifecycle, which setup reports
	// as missing (exit 1) rather than hiding.
	env := append(v.Env(bucket), "WORKER_ACCESS_KEY="+workerKey, "AUTOGLM_S3_STAT_BEFORE_REPLACE=true",
		"TEMPORAL_ADDRESS="+suite.Stack.TemporalAddress, "TEMPORAL_NAMESPACE="+suite.Stack.Namespace)
	out, code := run(t, ctx, env, "setup", "--bucket-policy", filepath.Join(suite.Root, "docker", "worker-bucket-policy.json"))
	if code != 1 || !strings.Contains(out, "ok      bucket policy") || !strings.Contains(out, "MISSING lifecycle rules") || !strings.Contains(strings.ToLower(out), "not implemented") && !strings.Contains(out, "NotImplemented") {
		t.Fatalf("setup on versitygw: exit %d\n%s\nwant the policy set and the lifecycle reported missing", code, out)
	}
	t.Logf("setup on versitygw:\n%s", out)

	w, err := storage.Open(ctx, storage.Config{Endpoint: v.S3Endpoint, Bucket: bucket, Insecure: true, AccessKey: workerKey, SecretKey: workerSecret, StatBeforeReplace: true})
	if err != nil {
		t.Fatal(err)
	}
	// What a worker does at start: the bucket is there and versioned.
	if err := storage.EnsureBucket(ctx, w); err != nil {
		t.Errorf("worker start (EnsureBucket) with its own credentials: %v", err)
	}
	key := "data/00/demo/lp/report.json"
	info, err := w.Create(ctx, key, strings.NewReader(`{"a":1}`), 7, storage.PutOptions{Tags: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatalf("worker create: %v", err)
	}
	if _, err := w.Replace(ctx, key, info.ETag, strings.NewReader(`{"a":2}`), 7, storage.PutOptions{}); err != nil {
		t.Errorf("worker replace: %v", err)
	}
	if _, err := w.List(ctx, "data/"); err != nil {
		t.Errorf("worker list: %v", err)
	}
	if rc, _, err := w.Get(ctx, key); err != nil {
		t.Errorf("worker get: %v", err)
	} else {
		rc.Close()
	}
	if err := w.Delete(ctx, key); err != nil {
		t.Errorf("worker delete: %v", err)
	}

	wc, err := minio.New(v.S3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(workerKey, workerSecret, "")})
	if err != nil {
		t.Fatal(err)
	}
	denied := map[string]error{
		"create a bucket":          wc.MakeBucket(ctx, "worker-made", minio.MakeBucketOptions{}),
		"change the bucket policy": wc.SetBucketPolicy(ctx, bucket, ""),
		"write another bucket": func() error {
			_, err := wc.PutObject(ctx, "other", "x", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
			return err
		}(),
		"delete the bucket": wc.RemoveBucket(ctx, bucket),
	}
	for what, err := range denied {
		if err == nil {
			t.Errorf("the worker's credentials may %s", what)
		} else if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
			t.Logf("%s: refused with %s", what, code)
		}
	}
}
