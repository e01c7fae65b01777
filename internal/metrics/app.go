package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// App are autoglm-flow's own metrics. A nil *App records nothing, so code
// under test needs no registry.
type App struct {
	Requests         *prometheus.CounterVec
	RequestSeconds   *prometheus.HistogramVec
	Tokens           *prometheus.CounterVec
	BytesWritten     *prometheus.CounterVec
	CheckpointSecs   prometheus.Histogram
	LastCheckpoint   prometheus.Gauge
	NodeLastAnnounce *prometheus.GaugeVec
	Training         trainingMetrics
}

func newApp() *App {
	return &App{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "llm_requests_total",
			Help: "Requests to the model server by outcome: ok, or the error class (RateLimited, UpstreamUnavailable, InvalidRequest, ...). rate() of outcome=ok is items per second.",
		}, []string{"outcome"}),
		RequestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "llm_request_duration_seconds",
			Help:    "Latency of one request to the model server, answered or failed.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, []string{"outcome"}),
		Tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "llm_tokens_total",
			Help: "Tokens the model server reported in usage: direction=in (prompt) or out (completion).",
		}, []string{"direction"}),
		BytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "archived_bytes_total",
			Help: "Bytes written to the bucket, by category (data, checkpoint, log, ...).",
		}, []string{"category"}),
		CheckpointSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "checkpoint_write_duration_seconds",
			Help:    "Time to write one object under the checkpoint category (a sealed part or a checkpoint record).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		LastCheckpoint: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "checkpoint_last_timestamp_seconds",
			Help: "Unix time of this worker's newest checkpoint write; checkpoint lag is time() minus this while batches run.",
		}),
		NodeLastAnnounce: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "node_last_announce_timestamp_seconds",
			Help: "Unix time this worker last wrote its node record; dispatch treats a node as dead when it is stale.",
		}, []string{"node"}),
		Training: newTrainingMetrics(),
	}
}

func (a *App) register(reg prometheus.Registerer) error {
	for _, c := range append([]prometheus.Collector{a.Requests, a.RequestSeconds, a.Tokens, a.BytesWritten, a.CheckpointSecs, a.LastCheckpoint, a.NodeLastAnnounce}, a.Training.collectors()...) {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
