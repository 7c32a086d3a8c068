package ingest

import (
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// streamInfo keeps veil_camera_stream_info at one series per camera, whose
// labels say what the camera sends now: codec, picture size and frame rate.
// When any of them changes the old series is deleted, so the label set
// stays bounded by the number of cameras.
type streamInfo struct {
	vec    *prometheus.GaugeVec
	camera string
	codec  string
	log    *slog.Logger

	mu     sync.Mutex
	labels []string // the current series; nil before the first frame
	w, h   int
	fps    int
	// frame rate, measured as units received per fpsWindow
	since time.Time
	base  int64
}

const fpsWindow = 5 * time.Second

func newStreamInfoVec(reg prometheus.Registerer) (*prometheus.GaugeVec, error) {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "veil_camera_stream_info",
		Help: "1 for what the camera sends now: codec (H.264, H.265, MJPEG, VP8), picture width and height, frame rate (units received per second, rounded; empty until measured)."},
		[]string{"camera", "codec", "width", "height", "fps"})
	return v, reg.Register(v)
}

// stream starts the info of one session of camera.
func (m *Metrics) stream(camera, codec string, log *slog.Logger) *streamInfo {
	return &streamInfo{vec: m.info, camera: camera, codec: codec, log: log}
}

// frame notes a decoded picture of w x h at now; units is the running count
// of units received, from which the frame rate is measured.
func (s *streamInfo) frame(w, h int, units int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.labels == nil
	if s.labels != nil && (w != s.w || h != s.h) {
		// Once per change, never per frame: a camera whose settings were
		// edited, or a substream switch.
		s.log.Info("camera picture size changed", "from", strconv.Itoa(s.w)+"x"+strconv.Itoa(s.h), "to", strconv.Itoa(w)+"x"+strconv.Itoa(h))
		changed = true
	}
	s.w, s.h = w, h
	if s.since.IsZero() {
		s.since, s.base = now, units
	} else if d := now.Sub(s.since); d >= fpsWindow {
		fps := int(math.Round(float64(units-s.base) / d.Seconds()))
		changed = changed || fps != s.fps
		s.fps, s.since, s.base = fps, now, units
	}
	if !changed {
		return
	}
	if s.labels != nil {
		s.vec.DeleteLabelValues(s.labels...)
	}
	fps := ""
	if s.fps > 0 {
		fps = strconv.Itoa(s.fps)
	}
	s.labels = []string{s.camera, s.codec, strconv.Itoa(w), strconv.Itoa(h), fps}
	s.vec.WithLabelValues(s.labels...).Set(1)
}

// down removes the series: the camera sends nothing now.
func (s *streamInfo) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.labels != nil {
		s.vec.DeleteLabelValues(s.labels...)
		s.labels = nil
	}
}
