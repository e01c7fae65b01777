package worker

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/sirupsen/logrus"
)

// profilePeakHeap writes a heap profile to path each time the heap in use
// passes its highest mark so far (checked five times a second, and only past 5%
// more, so a slowly rising heap does not write at every tick): the file
// left at the end shows what the worker held at its peak, which is what
// peak RSS measures.
func profilePeakHeap(ctx context.Context, path string, log *logrus.Logger) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var peak uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse <= peak+peak/20 {
			continue
		}
		peak = ms.HeapInuse
		if err := writeHeapProfile(path, ms); err != nil {
			log.WithError(err).Warn("writing the heap profile")
			return
		}
	}
}

func writeHeapProfile(path string, ms runtime.MemStats) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// The runtime's own view beside it: the profile shows live objects
	// only, not the garbage and stacks that RSS also counts.
	const mib = 1 << 20
	stats := fmt.Sprintf("heap_inuse_mib=%.1f heap_alloc_mib=%.1f heap_sys_mib=%.1f heap_released_mib=%.1f stack_sys_mib=%.1f sys_mib=%.1f num_gc=%d goroutines=%d\n",
		float64(ms.HeapInuse)/mib, float64(ms.HeapAlloc)/mib, float64(ms.HeapSys)/mib, float64(ms.HeapReleased)/mib, float64(ms.StackSys)/mib, float64(ms.Sys)/mib, ms.NumGC, runtime.NumGoroutine())
	return os.WriteFile(path+".txt", []byte(stats), 0o644)
}

// profileCPU profiles the worker's CPU until the returned stop, which
// writes the profile; the worker calls it on its way out, after running
// batches have recorded their checkpoints.
func profileCPU(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("worker: the CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("worker: the CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
