package pipeline

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// costSeries are the stages' time spent on a camera, by its camera label:
// decoding, face inference, obscuring, person inference and encoding. Each
// runs on one thread at a time, so their seconds a second are the cores
// the camera takes.
var costSeries = []string{
	"veil_ingest_decode_duration_seconds",
	"veil_engine_inference_duration_seconds",
	"veil_blur_obscure_duration_seconds",
	"veil_engine_people_inference_duration_seconds",
	"veil_live_encode_duration_seconds",
}

// minCostRun is how long a camera must have run here before its cost is
// believed: its first seconds (connecting, compiling the detector's crop
// networks) are not its cost.
const minCostRun = 10 * time.Second

// costMeter measures what each camera this box serves costs it, in cores,
// over the camera's run here, from the stages' own duration metrics.
type costMeter struct {
	gather prometheus.Gatherer
	now    func() time.Time

	mu    sync.Mutex
	since map[string]costMark // the running cameras, from their start
}

type costMark struct {
	at   time.Time
	busy float64
}

func newCostMeter(g prometheus.Gatherer) *costMeter {
	return &costMeter{gather: g, now: time.Now, since: map[string]costMark{}}
}

// busy is the seconds spent so far on each camera.
func (m *costMeter) busy() map[string]float64 {
	fams, _ := m.gather.Gather() // a partial result is still a measure
	out := map[string]float64{}
	for _, f := range fams {
		match := false
		for _, n := range costSeries {
			match = match || f.GetName() == n
		}
		if !match {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "camera" && mt.GetHistogram() != nil {
					out[l.GetValue()] += mt.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return out
}

// started marks camera's run here from now; a nil meter (no placement)
// measures nothing.
func (m *costMeter) started(camera string) {
	if m == nil {
		return
	}
	b := m.busy()[camera]
	m.mu.Lock()
	m.since[camera] = costMark{at: m.now(), busy: b}
	m.mu.Unlock()
}

func (m *costMeter) stopped(camera string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	delete(m.since, camera)
	m.mu.Unlock()
}

// measured is each running camera's cores over its run so far, for those
// that have run minCostRun.
func (m *costMeter) measured() map[string]float64 {
	busy := m.busy()
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]float64{}
	for cam, mk := range m.since {
		if d := now.Sub(mk.at); d >= minCostRun {
			out[cam] = max(busy[cam]-mk.busy, 0) / d.Seconds()
		}
	}
	return out
}
