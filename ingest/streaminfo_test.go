package ingest

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// TestStreamInfoMeasuresFrameRate: the fps label is empty until a window
// of frames has been seen, then says the rate the units arrived at; a new
// rate or size replaces the series, so one camera has one series.
func TestStreamInfoMeasuresFrameRate(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := m.stream("lobby", "H.264", slog.New(slog.DiscardHandler))
	at := time.Unix(1700000000, 0)
	units := int64(0)
	feed := func(fps int, d time.Duration, w, h int) {
		step := time.Second / time.Duration(fps)
		for end := at.Add(d); at.Before(end); at = at.Add(step) {
			units++
			s.frame(w, h, units, at)
		}
	}
	for _, tc := range []struct {
		name       string
		fps        int
		d          time.Duration
		w, h       int
		wantLabels []string
	}{
		{"before a window is seen", 15, 2 * time.Second, 1280, 720, []string{"lobby", "H.264", "1280", "720", ""}},
		{"after it", 15, 6 * time.Second, 1280, 720, []string{"lobby", "H.264", "1280", "720", "15"}},
		{"the camera slows", 8, 11 * time.Second, 1280, 720, []string{"lobby", "H.264", "1280", "720", "8"}},
		{"a new size keeps the rate", 8, time.Second, 640, 480, []string{"lobby", "H.264", "640", "480", "8"}},
	} {
		feed(tc.fps, tc.d, tc.w, tc.h)
		if n := testutil.CollectAndCount(m.info); n != 1 {
			t.Errorf("%s: %d series, want 1", tc.name, n)
		}
		if v := testutil.ToFloat64(m.info.WithLabelValues(tc.wantLabels...)); v != 1 {
			t.Errorf("%s: no series %v", tc.name, tc.wantLabels)
		}
	}
	s.down()
	if n := testutil.CollectAndCount(m.info); n != 0 {
		t.Errorf("after down: %d series", n)
	}
}

// hasStreamInfo says whether veil_camera_stream_info has camera's series
// with this codec and size (at whatever frame rate was measured so far).
func hasStreamInfo(v *prometheus.GaugeVec, camera, codec, w, h string) bool {
	ch := make(chan prometheus.Metric, 16)
	v.Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		m.Write(&d)
		got := map[string]string{}
		for _, l := range d.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if got["camera"] == camera && got["codec"] == codec && got["width"] == w && got["height"] == h && d.GetGauge().GetValue() == 1 {
			return true
		}
	}
	return false
}
