package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StartVersity starts versitygw (a maintained S3 gateway on a POSIX
// folder, with versioning and its internal IAM, so that other accounts
// than the root can be made) as a second real S3 store, on a free
// loopback port, and creates opts.Buckets. Only Dir, BinDir, Buckets,
// AccessKey and SecretKey of opts are read; the Stack has no Temporal.
func StartVersity(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.Dir == "" {
		return nil, errors.New("devstack: Options.Dir is required")
	}
	bin := filepath.Join(opts.BinDir, "versitygw")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("devstack: versitygw is not built in %s: run `make tools`", opts.BinDir)
	}
	if opts.AccessKey == "" {
		opts.AccessKey, opts.SecretKey = "autoglm", "autoglm-dev-secret"
	}
	s := &Stack{AccessKey: opts.AccessKey, SecretKey: opts.SecretKey, LogDir: filepath.Join(opts.Dir, "logs")}
	root, versions, iam := filepath.Join(opts.Dir, "versity"), filepath.Join(opts.Dir, "versity-versions"), filepath.Join(opts.Dir, "versity-iam")
	for _, d := range []string{s.LogDir, root, versions, iam} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("devstack: %w", err)
		}
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	return s, s.startRetrying(func() error {
		port, err := FreePort()
		if err != nil {
			return err
		}
		s.S3Endpoint = fmt.Sprintf("127.0.0.1:%d", port)
		env := []string{"ROOT_ACCESS_KEY=" + opts.AccessKey, "ROOT_SECRET_KEY=" + opts.SecretKey}
		p, err := startProcess(bin, []string{"--port", s.S3Endpoint, "--quiet", "--iam-dir", iam, "posix", "--versioning-dir", versions, root}, env, filepath.Join(s.LogDir, "versitygw.log"))
		if err != nil {
			return err
		}
		s.procs = append(s.procs, p)
		mc, err := s.S3Client()
		if err != nil {
			return err
		}
		return waitFor(ctx, p, "versitygw", 60*time.Second, func(ctx context.Context) error {
			return makeBuckets(ctx, mc, opts.Buckets)
		})
	})
}
