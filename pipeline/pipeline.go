// Package pipeline holds what the stages share: the frame types
// (pipeline/frame), bounded queues (pipeline/queue), sinks (pipeline/sink),
// and the metrics of the hand-offs between stages. Wiring happens in
// cmd/veil.
package pipeline

import "github.com/prometheus/client_golang/prometheus"

// Drop reasons for veil_pipeline_frames_dropped_total.
const (
	DropQueueFull = "queue_full" // a stage was slower than its source; the oldest frame went
)

// Metrics count frames between stages.
type Metrics struct {
	// FramesOut counts obscured frames delivered to sinks per camera.
	FramesOut *prometheus.CounterVec
	// FramesDropped counts video frames discarded by a bounded queue, by
	// camera, the queue's stage and reason.
	FramesDropped *prometheus.CounterVec
}

// NewMetrics creates and registers the pipeline metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		FramesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_pipeline_frames_delivered_total",
			Help: "Obscured frames delivered to sinks.",
		}, []string{"camera"}),
		FramesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_pipeline_frames_dropped_total",
			Help: "Video frames dropped by a bounded queue, by the stage the queue feeds and the reason.",
		}, []string{"camera", "stage", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.FramesOut, m.FramesDropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
