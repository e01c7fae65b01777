// Package devstack starts and stops the local stack that `autoglm dev`,
// `make demo` and the integration tests run on: a real Temporal dev server
// (SQLite file, Web UI, the project's search attributes) and a real MinIO
// server (data folder, buckets created), each on loopback ports, each
// stopped by its PID.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

// Options say where the stack keeps its files and which ports it takes.
// A zero port means a free loopback port.
type Options struct {
	// Dir holds the data of both servers and their logs (Dir/logs).
	Dir string
	// BinDir holds the temporal and minio binaries (`make tools`).
	BinDir string

	// NoTemporal starts MinIO alone, for tests that need only the bucket.
	NoTemporal bool
	// NoSearchAttributes starts Temporal as a real cluster comes: without
	// the project's search attributes (`autoglm setup` adds them).
	NoSearchAttributes bool

	TemporalPort int
	UIPort       int // only when UI is true
	UI           bool
	S3Port       int
	ConsolePort  int

	Namespace string   // default "default"
	Buckets   []string // created if absent
	// AccessKey and SecretKey are MinIO's root credentials; defaults are
	// fine for a loopback-only dev server.
	AccessKey, SecretKey string
}

// Stack is a running local stack.
type Stack struct {
	TemporalAddress string
	Namespace       string
	UIURL           string // empty when the UI is off
	S3Endpoint      string // host:port
	ConsoleURL      string
	AccessKey       string
	SecretKey       string
	LogDir          string

	procs []*Process
	// minio is MinIO's process and the options it was started with, so
	// that a test can stop it and start it again (StopS3, RestartS3).
	minio     *Process
	minioOpts Options
}

// Start starts both servers and returns once each answers. On error nothing
// is left running.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.Dir == "" {
		return nil, errors.New("devstack: Options.Dir is required")
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.AccessKey == "" {
		opts.AccessKey, opts.SecretKey = "autoglm", "autoglm-dev-secret"
	}
	bins := []string{"temporal", "minio"}
	if opts.NoTemporal {
		bins = bins[1:]
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return nil, fmt.Errorf("devstack: %s is not built in %s: run `make tools`", b, opts.BinDir)
		}
	}
	s := &Stack{Namespace: opts.Namespace, AccessKey: opts.AccessKey, SecretKey: opts.SecretKey, LogDir: filepath.Join(opts.Dir, "logs")}
	for _, d := range []string{s.LogDir, filepath.Join(opts.Dir, "minio"), filepath.Join(opts.Dir, "temporal")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("devstack: %w", err)
		}
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := s.startRetrying(func() error { return s.startMinIO(ctx, opts) }); err != nil {
		return nil, err
	}
	if opts.NoTemporal {
		return s, nil
	}
	if err := s.startRetrying(func() error { return s.startTemporal(ctx, opts) }); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) startTemporal(ctx context.Context, opts Options) error {
	ports, err := portsOrFree(opts.TemporalPort, opts.UIPort, 0, 0)
	if err != nil {
		return err
	}
	grpcPort, uiPort, httpPort, metricsPort := ports[0], ports[1], ports[2], ports[3]
	args := []string{"server", "start-dev",
		"--ip", "127.0.0.1",
		"--port", strconv.Itoa(grpcPort),
		"--http-port", strconv.Itoa(httpPort),
		"--metrics-port", strconv.Itoa(metricsPort),
		"--namespace", opts.Namespace,
		"--db-filename", filepath.Join(opts.Dir, "temporal", "temporal.db"),
		"--log-level", "warn",
		// Priority and fairness keys are honoured only by the new matcher.
		"--dynamic-config-value", "matching.useNewMatcher=true",
		"--dynamic-config-value", "matching.enableFairness=true",
		// Priority orders the backlog of one partition; a single partition
		// makes it hold across a whole (dev-sized) queue.
		"--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
		"--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
	}
	if opts.UI {
		args = append(args, "--ui-ip", "127.0.0.1", "--ui-port", strconv.Itoa(uiPort))
		s.UIURL = fmt.Sprintf("http://127.0.0.1:%d", uiPort)
	} else {
		args = append(args, "--headless")
	}
	for _, sa := range task.SearchAttributeTypes() {
		if !opts.NoSearchAttributes {
			args = append(args, "--search-attribute", sa)
		}
	}
	p, err := startProcess(filepath.Join(opts.BinDir, "temporal"), args, nil, filepath.Join(s.LogDir, "temporal.log"))
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	s.TemporalAddress = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	return waitFor(ctx, p, "temporal", 60*time.Second, func(ctx context.Context) error {
		return CheckTemporal(ctx, s.TemporalAddress, opts.Namespace)
	})
}

func (s *Stack) startMinIO(ctx context.Context, opts Options) error {
	ports, err := portsOrFree(opts.S3Port, opts.ConsolePort)
	if err != nil {
		return err
	}
	s.S3Endpoint = fmt.Sprintf("127.0.0.1:%d", ports[0])
	s.ConsoleURL = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	env := []string{
		"MINIO_ROOT_USER=" + opts.AccessKey,
		"MINIO_ROOT_PASSWORD=" + opts.SecretKey,
		"MINIO_BROWSER=on",
		"MINIO_UPDATE=off",
	}
	args := []string{"server", filepath.Join(opts.Dir, "minio"),
		"--address", s.S3Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--quiet",
	}
	p, err := startProcess(filepath.Join(opts.BinDir, "minio"), args, env, filepath.Join(s.LogDir, "minio.log"))
	if err != nil {
		return err
	}
	s.procs = append(s.procs, p)
	s.minio, s.minioOpts = p, opts
	mc, err := s.S3Client()
	if err != nil {
		return err
	}
	return waitFor(ctx, p, "minio", 60*time.Second, func(ctx context.Context) error {
		return makeBuckets(ctx, mc, opts.Buckets)
	})
}

// makeBuckets creates the buckets missing; an S3 server still starting
// answers with an error, so waitFor calls it until it succeeds.
func makeBuckets(ctx context.Context, mc *minio.Client, buckets []string) error {
	for _, b := range buckets {
		ok, err := mc.BucketExists(ctx, b)
		if err != nil {
			return err
		}
		if !ok {
			if err := mc.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
				return err
			}
		}
	}
	_, err := mc.ListBuckets(ctx)
	return err
}

// S3Client is a minio-go client for the stack's MinIO.
func (s *Stack) S3Client() (*minio.Client, error) {
	return minio.New(s.S3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
}

// Env is the environment that points the worker and the CLI at this stack.
func (s *Stack) Env(bucket string) []string {
	return []string{
		"TEMPORAL_ADDRESS=" + s.TemporalAddress,
		"TEMPORAL_NAMESPACE=" + s.Namespace,
		"AUTOGLM_S3_ENDPOINT=" + s.S3Endpoint,
		"AUTOGLM_S3_BUCKET=" + bucket,
		"AUTOGLM_S3_ACCESS_KEY=" + s.AccessKey,
		"AUTOGLM_S3_SECRET_KEY=" + s.SecretKey,
		"AUTOGLM_S3_INSECURE=true",
	}
}

// Stop stops every server by its PID, the newest first. It is safe to call
// more than once.
func (s *Stack) Stop() error {
	var errs []error
	for i := len(s.procs) - 1; i >= 0; i-- {
		errs = append(errs, s.procs[i].Stop(15*time.Second))
	}
	s.procs = nil
	return errors.Join(errs...)
}

// PIDs are the process IDs of the running servers.
func (s *Stack) PIDs() []int {
	var pids []int
	for _, p := range s.procs {
		pids = append(pids, p.PID())
	}
	return pids
}

// StopS3 stops MinIO by its PID, as an outage: its data folder stays,
// and RestartS3 starts it again on the same port.
func (s *Stack) StopS3() error {
	if s.minio == nil {
		return errors.New("devstack: MinIO is not running")
	}
	err := s.minio.Stop(15 * time.Second)
	s.procs = slices.DeleteFunc(s.procs, func(p *Process) bool { return p == s.minio })
	s.minio = nil
	return err
}

// RestartS3 starts MinIO again on the address and data folder it had,
// and returns once it answers.
func (s *Stack) RestartS3(ctx context.Context) error {
	if s.minio != nil {
		return errors.New("devstack: MinIO is already running")
	}
	opts := s.minioOpts
	if _, err := fmt.Sscanf(s.S3Endpoint, "127.0.0.1:%d", &opts.S3Port); err != nil {
		return fmt.Errorf("devstack: MinIO's address %q: %w", s.S3Endpoint, err)
	}
	if _, err := fmt.Sscanf(s.ConsoleURL, "http://127.0.0.1:%d", &opts.ConsolePort); err != nil {
		return fmt.Errorf("devstack: MinIO's console %q: %w", s.ConsoleURL, err)
	}
	return s.startMinIO(ctx, opts)
}
