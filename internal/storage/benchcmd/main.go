// Command benchcmd measures the artifact store's upload throughput against
// a raw minio-go PutObject of the same bytes to the same MinIO, in the same
// run, and prints one line per figure:
//
//	BENCH name=<name> value=<number> unit=<unit> baseline=<number> ratio=<value/baseline> goal=0.9
//
// It starts its own MinIO (internal/devstack) on free ports and stops it
// by PID. Rounds alternate store and baseline, so drift in the machine's
// load hits both; each figure is the median of its rounds.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
)

const bucket = "bench"

func main() {
	rounds := flag.Int("rounds", 7, "uploads of each size, per side")
	drivers := flag.String("drivers", "minio,aws", "drivers to measure (comma-separated)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rounds, *drivers); err != nil {
		fmt.Fprintln(os.Stderr, "storage bench:", err)
		os.Exit(1)
	}
}

// figure is one measured comparison.
type figure struct {
	name  string
	size  int
	store storage.Store
}

func run(ctx context.Context, rounds int, drivers string) error {
	bin, err := devstack.BinDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "storage-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	st, err := devstack.Start(sctx, devstack.Options{Dir: dir, BinDir: bin, NoTemporal: true, Buckets: []string{bucket}})
	if err != nil {
		return err
	}
	defer st.Stop()
	raw, err := st.S3Client()
	if err != nil {
		return err
	}
	stores := map[string]storage.Store{}
	for _, d := range []string{storage.DriverMinIO, storage.DriverAWS} {
		s, err := storage.Open(ctx, storage.Config{Driver: d, Endpoint: st.S3Endpoint, Bucket: bucket, Insecure: true, AccessKey: st.AccessKey, SecretKey: st.SecretKey})
		if err != nil {
			return err
		}
		stores[d] = s
	}
	if err := storage.EnsureBucket(ctx, stores[storage.DriverMinIO]); err != nil {
		return err
	}
	var figures []figure
	for _, d := range []string{storage.DriverMinIO, storage.DriverAWS} {
		if !slices.Contains(strings.Split(drivers, ","), d) {
			continue
		}
		figures = append(figures,
			figure{"storage_upload_64MiB_" + d, 64 << 20, stores[d]},
			figure{"storage_upload_1MiB_" + d, 1 << 20, stores[d]},
		)
	}
	for _, f := range figures {
		value, baseline, err := measure(ctx, f, raw, rounds)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		fmt.Printf("BENCH name=%s value=%.1f unit=MiB/s baseline=%.1f ratio=%.3f goal=0.9\n", f.name, value, baseline, value/baseline)
	}
	return nil
}

// measure uploads f.size bytes rounds times through the store (Create)
// and through minio-go's PutObject, alternating, and returns the median
// MiB/s of each. Both read the same bytes from a bytes.Reader; the objects
// are new keys each time, as a task's artifacts are.
func measure(ctx context.Context, f figure, raw *minio.Client, rounds int) (value, baseline float64, err error) {
	data := make([]byte, f.size)
	rand.NewChaCha8([32]byte{9}).Read(data)
	// Small objects take less time each: more rounds, for a steady median.
	rounds = max(rounds, rounds*(8<<20)/f.size)
	var mine, theirs []float64
	for i := -1; i < rounds; i++ { // round -1 warms both up
		key := fmt.Sprintf("%s/%d", f.name, i)
		t0 := time.Now()
		if _, err := f.store.Create(ctx, key+"/store", bytes.NewReader(data), int64(len(data)), storage.PutOptions{}); err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		if _, err := raw.PutObject(ctx, bucket, key+"/raw", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			return 0, 0, err
		}
		t2 := time.Now()
		if i >= 0 {
			mine = append(mine, mibps(f.size, t1.Sub(t0)))
			theirs = append(theirs, mibps(f.size, t2.Sub(t1)))
		}
	}
	return median(mine), median(theirs), nil
}

func mibps(n int, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
