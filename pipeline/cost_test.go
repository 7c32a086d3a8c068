package pipeline

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCostMeter: a camera's cost is the seconds its stages spent on it
// while it ran here, a second; time spent before its run, on other
// cameras, or in other metrics does not count, and a run too short to
// judge is not reported.
func TestCostMeter(t *testing.T) {
	reg := prometheus.NewRegistry()
	hist := func(name string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name}, []string{"camera"})
		reg.MustRegister(h)
		return h
	}
	infer, encode, other := hist("veil_engine_inference_duration_seconds"), hist("veil_live_encode_duration_seconds"), hist("veil_people_process_duration_seconds")
	now := time.Unix(1000, 0)
	m := newCostMeter(reg)
	m.now = func() time.Time { return now }

	infer.WithLabelValues("door").Observe(50) // before its run here
	m.started("door")
	m.started("hall")
	now = now.Add(5 * time.Second)
	infer.WithLabelValues("door").Observe(2)
	if got := m.measured(); len(got) != 0 {
		t.Errorf("after 5 s: %v, want nothing yet", got)
	}
	now = now.Add(15 * time.Second) // 20 s of run
	infer.WithLabelValues("door").Observe(4)
	encode.WithLabelValues("door").Observe(2) // 8 s of work in 20 s
	infer.WithLabelValues("hall").Observe(1)
	other.WithLabelValues("door").Observe(100) // not a stage's time on the camera
	got := m.measured()
	if math.Abs(got["door"]-0.4) > 1e-9 || math.Abs(got["hall"]-0.05) > 1e-9 || len(got) != 2 {
		t.Errorf("measured %v, want door 0.4 and hall 0.05 cores", got)
	}
	m.stopped("hall")
	if _, ok := m.measured()["hall"]; ok {
		t.Error("a camera no longer served here is still reported")
	}
}
