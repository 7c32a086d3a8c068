package counter

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the counter's own series: the live view on the counting box.
// The business totals that dashboards use come from the Kafka exporter
// (veil_footfall_*), which deduplicates.
type Metrics struct {
	crossings *prometheus.CounterVec
	occupancy *prometheus.GaugeVec
	capacity  *prometheus.GaugeVec
	tracks    *prometheus.GaugeVec
	frames    *prometheus.CounterVec
	events    *prometheus.CounterVec
	seconds   *prometheus.HistogramVec
	detect    *prometheus.HistogramVec
	skipped   *prometheus.CounterVec
}

// NewMetrics creates and registers the counter metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		crossings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_people_crossings_total",
			Help: "People counted crossing a line, by direction (in or out).",
		}, []string{"camera", "line", "direction"}),
		occupancy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veil_people_zone_occupancy",
			Help: "People in a zone now (smoothed).",
		}, []string{"camera", "zone"}),
		capacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veil_people_zone_capacity",
			Help: "A zone's configured capacity (0: none).",
		}, []string{"camera", "zone"}),
		tracks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "veil_people_tracked",
			Help: "People tracked in view now.",
		}, []string{"camera"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_people_frames_total",
			Help: "Obscured frames counted.",
		}, []string{"camera"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_people_count_events_total",
			Help: "Count events emitted (one per camera and window).",
		}, []string{"camera"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "veil_people_process_duration_seconds",
			Help:    "Time to count one frame.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
		}, []string{"camera"}),
		detect: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "veil_people_detect_duration_seconds",
			Help:    "Time from asking the shared engine for a person detection to its answer (waiting behind faces included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 13),
		}, []string{"camera"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_people_detections_skipped_total",
			Help: "Person detections skipped because the engine did not answer in time (or failed); tracks coast meanwhile.",
		}, []string{"camera"}),
	}
	for _, c := range []prometheus.Collector{m.crossings, m.occupancy, m.capacity, m.tracks, m.frames, m.events, m.seconds, m.detect, m.skipped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type cameraMetrics struct {
	entries, exits []prometheus.Counter
	occupancy      []prometheus.Gauge
	tracks         prometheus.Gauge
	frames         prometheus.Counter
	events         prometheus.Counter
	seconds        prometheus.Observer
	detect         prometheus.Observer
	skipped        prometheus.Counter
}

func (m *Metrics) forCamera(camera string, cfg Config) cameraMetrics {
	cm := cameraMetrics{
		tracks:  m.tracks.WithLabelValues(camera),
		frames:  m.frames.WithLabelValues(camera),
		events:  m.events.WithLabelValues(camera),
		seconds: m.seconds.WithLabelValues(camera),
		detect:  m.detect.WithLabelValues(camera),
		skipped: m.skipped.WithLabelValues(camera),
	}
	for _, l := range cfg.Lines {
		cm.entries = append(cm.entries, m.crossings.WithLabelValues(camera, l.ID, "in"))
		cm.exits = append(cm.exits, m.crossings.WithLabelValues(camera, l.ID, "out"))
	}
	for _, z := range cfg.Zones {
		cm.occupancy = append(cm.occupancy, m.occupancy.WithLabelValues(camera, z.ID))
		m.capacity.WithLabelValues(camera, z.ID).Set(float64(z.Capacity))
	}
	return cm
}
