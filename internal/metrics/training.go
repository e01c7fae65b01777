package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/autoglm-flow/autoglm-flow/internal/trainer"
)

// trainingMetrics are what a node's training does.
type trainingMetrics struct {
	Steps       prometheus.Counter
	Loss        *prometheus.GaugeVec
	UploadSecs  prometheus.Histogram
	UploadBytes prometheus.Counter
	Resumes     prometheus.Counter
}

func newTrainingMetrics() trainingMetrics {
	return trainingMetrics{
		Steps: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "training_steps_total",
			Help: "Training steps the trainers of this worker reported; rate() is steps per second. Steps redone after a resume count again.",
		}),
		Loss: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "training_loss",
			Help: "The newest training loss of each fine-tuning task training on this worker; the series goes when the attempt ends.",
		}, []string{"task"}),
		UploadSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "training_checkpoint_upload_duration_seconds",
			Help:    "Time from the start of a training checkpoint's upload to its commit (every file, its manifest, the head and the record).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		UploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "training_checkpoint_upload_bytes_total",
			Help: "Bytes of the files of committed training checkpoints (and final models).",
		}),
		Resumes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "training_resumes_total",
			Help: "Training attempts that resumed from a committed checkpoint rather than from step 0.",
		}),
	}
}

func (t trainingMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.Steps, t.Loss, t.UploadSecs, t.UploadBytes, t.Resumes}
}

// Training counts what one training attempt does; a nil *App records
// nothing.
type Training struct {
	App  *App
	Task string
	mu   sync.Mutex
	last int // the step counted up to: the start, or the checkpoint resumed from
}

// Progress counts the steps since the last progress line (from the
// start or the checkpoint resumed from) and sets the loss.
func (t *Training) Progress(p trainer.Progress) {
	if t.App == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Step > t.last {
		t.App.Training.Steps.Add(float64(p.Step - t.last))
	}
	t.last = p.Step
	t.App.Training.Loss.WithLabelValues(t.Task).Set(p.Loss)
}

// Action counts resumes and committed checkpoints.
func (t *Training) Action(e trainer.Action) {
	if t.App == nil {
		return
	}
	switch e.Kind {
	case "resumed":
		t.App.Training.Resumes.Inc()
		// The steps up to the checkpoint were counted by the attempt
		// that trained them.
		t.mu.Lock()
		t.last = e.Step
		t.mu.Unlock()
	case "committed":
		t.App.Training.UploadSecs.Observe(e.Seconds)
		t.App.Training.UploadBytes.Add(float64(e.Bytes))
	}
}

// Done drops the attempt's loss series.
func (t *Training) Done() {
	if t.App != nil {
		t.App.Training.Loss.DeleteLabelValues(t.Task)
	}
}
