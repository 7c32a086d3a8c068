package blur

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the blur stage's Prometheus series, shared by every camera's
// stage in a process. Labels come from the configured camera ids and the
// fixed reason and result sets, so cardinality is bounded.
type Metrics struct {
	frames         *prometheus.CounterVec
	failClosed     *prometheus.CounterVec
	faces          *prometheus.CounterVec
	detectSeconds  *prometheus.HistogramVec
	obscureSeconds *prometheus.HistogramVec
	ready          *prometheus.GaugeVec
	searches       *prometheus.CounterVec
}

// NewMetrics creates and registers the blur metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_blur_frames_total",
			Help: "Frames leaving the blur stage, by result: obscured (faces obscured, detector vouched), fail_closed (obscured whole), dropped (failed closed under on_failure: drop), invalid (bad buffer).",
		}, []string{"camera", "result"}),
		failClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_blur_fail_closed_frames_total",
			Help: "Frames the detector did not vouch for, by reason (warmup, busy, deadline, error, panic, invalid).",
		}, []string{"camera", "reason"}),
		faces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_blur_faces_detected_total",
			Help: "Faces detected and obscured.",
		}, []string{"camera"}),
		detectSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "veil_blur_detect_duration_seconds",
			Help:    "Time from handing a frame to the detector to its answer or the deadline.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"camera"}),
		obscureSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "veil_blur_obscure_duration_seconds",
			Help:    "Time spent obscuring a frame after detection.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}, []string{"camera"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veil_blur_detector_ready",
			Help: "1 once the detector has answered at least once; until then every frame is obscured whole.",
		}, []string{"camera"}),
		searches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_blur_searches_total",
			Help: "Frames the detector searched, by kind: full (the whole frame: sweeps, start-up, scene changes, search: full) or regions (only where faces can newly be).",
		}, []string{"camera", "kind"}),
	}
	for _, c := range []prometheus.Collector{m.frames, m.failClosed, m.faces, m.detectSeconds, m.obscureSeconds, m.ready, m.searches} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type stageMetrics struct {
	frames struct {
		obscured, failClosed, dropped, invalid prometheus.Counter
	}
	failClosed     map[string]prometheus.Counter
	faces          prometheus.Counter
	detectSeconds  prometheus.Observer
	obscureSeconds prometheus.Observer
	ready          prometheus.Gauge
	searches       struct{ full, regions prometheus.Counter }
}

// forCamera binds the series of one camera, creating every label
// combination up front so that rates start from zero rather than from the
// first fault.
func (m *Metrics) forCamera(camera string) stageMetrics {
	var s stageMetrics
	s.frames.obscured = m.frames.WithLabelValues(camera, "obscured")
	s.frames.failClosed = m.frames.WithLabelValues(camera, "fail_closed")
	s.frames.dropped = m.frames.WithLabelValues(camera, "dropped")
	s.frames.invalid = m.frames.WithLabelValues(camera, "invalid")
	s.failClosed = make(map[string]prometheus.Counter, len(reasons))
	for _, r := range reasons {
		s.failClosed[r] = m.failClosed.WithLabelValues(camera, r)
	}
	s.faces = m.faces.WithLabelValues(camera)
	s.detectSeconds = m.detectSeconds.WithLabelValues(camera)
	s.obscureSeconds = m.obscureSeconds.WithLabelValues(camera)
	s.ready = m.ready.WithLabelValues(camera)
	s.searches.full = m.searches.WithLabelValues(camera, SearchFull)
	s.searches.regions = m.searches.WithLabelValues(camera, SearchRegions)
	return s
}
