// Package pipeline is the camera pipeline that every veil command
// configures, and the service that runs many of them.
//
// Two flows leave a camera, and the layout below this package follows them:
//
//	video:  Source ─*frame.Raw─▶ [queue] ─▶ blur ─*blur.Frame─┬─▶ [queue] ─▶ Output (record, file, progress)
//	                                                          └─▶ [queue] ─▶ counter ─┐
//	counts: counter ─footfall.Event─▶ [events, Block] ─▶ stdout / publish ─▶ spool ─▶ Kafka ─▶ exporter ─▶ /metrics
//
// The base types sit at the top of the module, below every stage: frame
// and queue for the video flow, footfall for the count event, rtcconf for
// WebRTC. pipeline/output holds the writers of obscured video;
// pipeline/counts everything that carries count events (spool, publish,
// exporter, kafkaconf); pipeline/config is veil.yaml.
// Camera assembles one camera and Service a whole veil run; cmd/veil only
// parses flags, builds a config and wires these.
package pipeline

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/engine"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline/output/live"
	"github.com/veilproject/veil/pipeline/output/record"
	"github.com/veilproject/veil/pipeline/output/sink"
	"github.com/veilproject/veil/queue"
)

// Source decodes a camera's frames. Run decodes into out until its input
// ends (nil, or an error naming the input) or ctx ends (ctx.Err()), and
// closes out before it returns in every case. A live source must never
// block on out (its queue drops the oldest frame instead).
type Source interface {
	Run(ctx context.Context, out *queue.Queue[*frame.Raw]) error
}

// Output takes a camera's obscured frames, in order, from one goroutine.
// Write may fail only for an output that cannot go on (a file job whose
// encoder died); a live output (the recorder) counts and retries its own
// failures and returns nil. Close finishes the output within ctx; called
// with a ctx that has already ended it abandons it (a job that did not
// finish leaves no output behind). Name labels the output's metrics.
type Output interface {
	Name() string
	Write(f *blur.Frame) error
	Close(ctx context.Context) error
}

// Interface guards: every source and output veil has.
var (
	_ Source = (*ingest.File)(nil)
	_ Source = (*ingest.Image)(nil)
	_ Source = (*ingest.RTSP)(nil)
	_ Source = (*ingest.WHIPSource)(nil)
	_ Output = (*live.Stream)(nil)
	_ Output = (*sink.Video)(nil)
	_ Output = (*sink.Image)(nil)
	_ Output = (*Progress)(nil)
)

// Drop reasons for veil_pipeline_frames_dropped_total.
const (
	DropQueueFull = "queue_full" // a stage was slower than its source; the oldest frame went
)

// Metrics are every stage's metrics, registered once per process on the
// registry main picks. There is no other way to register them.
type Metrics struct {
	Blur    *blur.Metrics
	Engine  *engine.Metrics
	Counter *counter.Metrics
	Ingest  *ingest.Metrics
	Record  *record.Metrics
	Live    *live.Metrics

	delivered *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

// NewMetrics registers every stage's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_pipeline_frames_delivered_total",
			Help: "Obscured frames handed to a camera's outputs and counter.",
		}, []string{"camera"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_pipeline_frames_dropped_total",
			Help: "Video frames dropped by a bounded queue, by the stage the queue feeds and the reason.",
		}, []string{"camera", "stage", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "veil_pipeline_output_latency_seconds",
			Help:    "From a frame's decoding to its hand-over to an output (the recorder): queueing, detection and obscuring.",
			Buckets: prometheus.ExponentialBuckets(0.01, 1.5, 16),
		}, []string{"camera", "output"}),
	}
	for _, c := range []prometheus.Collector{m.delivered, m.dropped, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	var err error
	if m.Blur, err = blur.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.Engine, err = engine.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.Counter, err = counter.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.Ingest, err = ingest.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.Record, err = record.NewMetrics(reg); err != nil {
		return nil, err
	}
	if m.Live, err = live.NewMetrics(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// NewRegistry is a registry with the Go runtime and process collectors,
// for main to hand to NewMetrics and to the counts path.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
