// Package metrics serves what an operator scrapes: the Temporal SDK's own
// metrics (through its OpenTelemetry handler, exported to Prometheus) and
// autoglm-flow's (client_golang), from one registry on /metrics.
package metrics

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	sdkotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// Namespace prefixes every metric of the app; the SDK's start with
// "temporal_".
const Namespace = "autoglm"

// Metrics is one process's registry: hand SDK to client.Options.MetricsHandler
// and Handler to an HTTP server.
type Metrics struct {
	Registry *prometheus.Registry
	// SDK is the Temporal SDK's metrics handler, exporting into Registry.
	SDK client.MetricsHandler
	App *App
}

// New makes a registry with the Go runtime, process, SDK and app metrics.
func New() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: the SDK's Prometheus exporter: %w", err)
	}
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)).Meter("go.temporal.io/sdk")
	app := newApp()
	if err := app.register(reg); err != nil {
		return nil, err
	}
	return &Metrics{
		Registry: reg,
		SDK:      sdkotel.NewMetricsHandler(sdkotel.MetricsHandlerOptions{Meter: meter}),
		App:      app,
	}, nil
}

// Handler serves the registry in Prometheus' text format; the worker and
// `autoglm server` mount it on /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Names are the names of the metrics the registry describes, sorted.
func (m *Metrics) Names() []string {
	ch := make(chan *prometheus.Desc)
	go func() { m.Registry.Describe(ch); close(ch) }()
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range ch {
		if s := re.FindStringSubmatch(d.String()); s != nil && !slices.Contains(names, s[1]) {
			names = append(names, s[1])
		}
	}
	slices.Sort(names)
	return names
}
