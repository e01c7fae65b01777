package metrics

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// source is a collector reading a value that the test sets; a reading
// holds at gate until the test lets it go, when gate is not nil.
type source struct {
	desc  *prometheus.Desc
	value atomic.Int64
	reads atomic.Int64
	gate  chan struct{}
	began chan struct{}
}

func newSource() *source {
	return &source{desc: prometheus.NewDesc("test_value", "A value.", nil, nil), began: make(chan struct{}, 16)}
}

func (s *source) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *source) Collect(ch chan<- prometheus.Metric) {
	s.reads.Add(1)
	v := s.value.Load()
	s.began <- struct{}{}
	if s.gate != nil {
		<-s.gate
	}
	ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, float64(v))
}

func scrape(t *testing.T, r *reading) []float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	r.Collect(ch)
	close(ch)
	var out []float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d.GetGauge().GetValue())
	}
	return out
}

// A scrape sees what changed before it arrived: each scrape gets a
// reading that began after it.
func TestReadingShowsWhatHappenedBeforeTheScrape(t *testing.T) {
	s := newSource()
	r := newReading(s, time.Minute)
	for i := int64(1); i <= 3; i++ {
		s.value.Store(i)
		if got := scrape(t, r); len(got) != 1 || got[0] != float64(i) {
			t.Fatalf("scrape %d got %v; want [%d]", i, got, i)
		}
	}
	if n := s.reads.Load(); n != 3 {
		t.Errorf("%d readings for 3 scrapes one after another; want 3", n)
	}
}

// A reading slower than the wait: the scrape serves the latest finished
// reading (none before the first), and the slow one serves the next.
func TestReadingSlowerThanTheWait(t *testing.T) {
	s := newSource()
	s.gate = make(chan struct{})
	r := newReading(s, 10*time.Millisecond)
	s.value.Store(1)
	if got := scrape(t, r); len(got) != 0 {
		t.Fatalf("a scrape before any reading finished got %v; want nothing", got)
	}
	s.gate <- struct{}{} // the first reading (1) finishes
	<-s.began
	s.value.Store(2)
	// The second scrape's reading holds at the gate: the scrape serves 1.
	if got := scrape(t, r); len(got) != 1 || got[0] != 1 {
		t.Fatalf("a scrape while its reading holds got %v; want [1]", got)
	}
	<-s.began
	s.gate <- struct{}{}
	close(s.gate)
	// The next scrape waits for a reading begun after it: 3.
	s.value.Store(3)
	if got := scrape(t, r); len(got) != 1 || got[0] != 3 {
		t.Fatalf("scrape got %v; want [3]", got)
	}
}
