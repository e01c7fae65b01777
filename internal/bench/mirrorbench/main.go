// Command mirrorbench measures the model mirror's copy of one file (Range-
// resumable download, sha256 while streaming and checked against the
// upstream's, resumable multipart upload with Content-MD5 per part) against
// a plain HTTP copy of the same bytes from the same loopback hub into the
// same MinIO (GET piped into minio-go PutObject, nothing verified), and
// prints
//
//	BENCH name=mirror_throughput_256MiB value=… unit=MiB/s baseline=… ratio=… goal=0.8
//
// It starts its own MinIO (internal/devstack) and stops it by PID. Rounds
// alternate mirror and baseline; the figure is the median of the rounds.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/autoglm-flow/autoglm-flow/activities"
	"github.com/autoglm-flow/autoglm-flow/internal/devstack"
	"github.com/autoglm-flow/autoglm-flow/internal/model"
	"github.com/autoglm-flow/autoglm-flow/internal/model/testhub"
	"github.com/autoglm-flow/autoglm-flow/internal/storage"
	"github.com/autoglm-flow/autoglm-flow/internal/task"
)

const bucket = "bench"

func main() {
	rounds := flag.Int("rounds", 5, "copies per side")
	mib := flag.Int("mib", 256, "file size in MiB")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rounds, *mib); err != nil {
		fmt.Fprintln(os.Stderr, "mirror bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, rounds, mib int) error {
	bin, err := devstack.BinDir()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mirror-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := devstack.Start(ctx, devstack.Options{Dir: dir + "/stack", BinDir: bin, NoTemporal: true, Buckets: []string{bucket}})
	if err != nil {
		return err
	}
	defer st.Stop()
	raw, err := st.S3Client()
	if err != nil {
		return err
	}
	store, err := storage.Open(ctx, storage.Config{Driver: storage.DriverMinIO, Endpoint: st.S3Endpoint, Bucket: bucket, Insecure: true, AccessKey: st.AccessKey, SecretKey: st.SecretKey})
	if err != nil {
		return err
	}
	hub := testhub.New("")
	defer hub.Close()
	size := int64(mib) << 20
	sum := hub.Add("bench/m", "main", "model.safetensors", testhub.Fixture(1, int(size)))
	up := model.Upstream{HubURL: hub.URL()}
	m := &activities.Mirror{Store: store, Upstream: up, StagingDir: dir + "/staging"}
	in := activities.MirrorFileInput{
		Model: task.MirrorInput{Name: "bench", Repo: "bench/m", Revision: "main", Upstream: task.UpstreamHF},
		File:  task.ModelFile{Name: "model.safetensors", Size: size, SHA256: sum},
	}
	key := task.ModelPrefix("bench", "main") + "model.safetensors"
	var mirrorRates, plainRates []float64
	for range rounds {
		_ = store.Delete(ctx, key)
		start := time.Now()
		if _, err := m.CopyFile(ctx, in, nil); err != nil {
			return err
		}
		mirrorRates = append(mirrorRates, float64(mib)/time.Since(start).Seconds())

		start = time.Now()
		if err := plainCopy(ctx, raw, up.FileURL(task.UpstreamHF, "bench/m", "main", "model.safetensors"), "plain/model.safetensors", size); err != nil {
			return err
		}
		plainRates = append(plainRates, float64(mib)/time.Since(start).Seconds())
	}
	v, b := median(mirrorRates), median(plainRates)
	fmt.Printf("BENCH name=mirror_throughput_%dMiB value=%.1f unit=MiB/s baseline=%.1f ratio=%.2f goal=0.8\n", mib, v, b, v/b)
	return nil
}

// plainCopy is the baseline: the file's bytes from the hub straight into
// MinIO, nothing staged, hashed or checked.
func plainCopy(ctx context.Context, raw *minio.Client, url, key string, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = raw.PutObject(ctx, bucket, key, resp.Body, size, minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: 16 << 20})
	return err
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
