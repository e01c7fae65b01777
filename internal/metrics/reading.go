package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReadingWait is how long a scrape waits for a fresh reading of the
// sources read at each scrape (Temporal's visibility, the usage ledger,
// the node records) before it serves the latest finished one. It stays
// under any scrape timeout Prometheus is given (its default is 10 s), so
// that a slow visibility store on a busy cluster makes the figures a
// little older, never the whole target down: a target down would fire the
// node-down and blind-metrics alerts and lose the SDK's series with it.
const ReadingWait = 3 * time.Second

// reading serves a collector whose Collect reads remote sources. A scrape
// gets a reading that began after the scrape arrived, so that what
// happened before a scrape shows in it; only when that reading takes
// longer than wait does the scrape serve the latest finished one (none
// before the first has finished). One reading runs at a time, however many
// scrapers ask; each ends by itself (the collectors bound their reads).
type reading struct {
	inner prometheus.Collector
	wait  time.Duration

	mu      sync.Mutex
	last    []prometheus.Metric
	lastAt  time.Time     // when the reading in last began
	running chan struct{} // closed when the reading in flight ends
}

func newReading(c prometheus.Collector, wait time.Duration) *reading {
	return &reading{inner: c, wait: wait}
}

// Describe implements prometheus.Collector.
func (r *reading) Describe(ch chan<- *prometheus.Desc) { r.inner.Describe(ch) }

// Collect implements prometheus.Collector.
func (r *reading) Collect(ch chan<- prometheus.Metric) {
	arrived := time.Now()
	timeout := time.NewTimer(r.wait)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		if !r.lastAt.IsZero() && !r.lastAt.Before(arrived) {
			break
		}
		if r.running == nil {
			r.running = make(chan struct{})
			go r.read(r.running, time.Now())
		}
		// A reading that began before this scrape arrived is waited for,
		// then another begins.
		done := r.running
		r.mu.Unlock()
		select {
		case <-done:
			continue
		case <-timeout.C:
			r.mu.Lock()
		}
		break
	}
	last := r.last
	r.mu.Unlock()
	for _, m := range last {
		ch <- m
	}
}

func (r *reading) read(done chan struct{}, began time.Time) {
	ch := make(chan prometheus.Metric)
	go func() {
		r.inner.Collect(ch)
		close(ch)
	}()
	var ms []prometheus.Metric
	for m := range ch {
		ms = append(ms, m)
	}
	r.mu.Lock()
	r.last, r.lastAt, r.running = ms, began, nil
	r.mu.Unlock()
	close(done)
}
