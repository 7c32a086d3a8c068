package counter

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/frame"
)

// vtestFrames decodes n frames of Debian's vtest.avi at w x h into obscured
// frames (its faces are 10-15 px; the detector is not what this measures).
func vtestFrames(b *testing.B, n, w, h int) []*blur.Frame {
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
		"-vf", "scale="+strconv.Itoa(w)+":"+strconv.Itoa(h), "-frames:v", strconv.Itoa(n),
		"-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1").Output()
	if err != nil {
		b.Fatal(err)
	}
	m, _ := blur.NewMetrics(prometheus.NewRegistry())
	st, err := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close(context.Background())
	st.WarmUp(context.Background(), w, h)
	var frames []*blur.Frame
	size := w * h * 3
	for i := 0; (i+1)*size <= len(out); i++ {
		pts := time.Duration(i) * 100 * time.Millisecond
		raw := frame.NewRaw(frame.Meta{Seq: uint64(i), PTS: pts, Captured: time.Unix(0, 0).Add(pts)}, w, h)
		copy(raw.Pix, out[i*size:])
		f, err := st.Obscure(context.Background(), raw)
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, f)
	}
	return frames
}

// BenchmarkCounter is the counter alone per frame on real footage (after
// its background warm-up), with the sample's line and zone.
func BenchmarkCounter(b *testing.B) {
	cfg := Config{
		Method: MethodMotion,
		Lines:  []Line{{ID: "road", From: Point{0.45, 0.68}, To: Point{0.45, 0.30}}},
		Zones:  []Zone{{ID: "road_area", Polygon: []Point{{0, 0.25}, {1, 0.25}, {1, 0.75}, {0, 0.75}}, Capacity: 8}},
	}
	for _, sz := range []struct {
		name string
		w, h int
	}{{"768x576", 768, 576}, {"1280x720", 1280, 720}} {
		frames := vtestFrames(b, 200, sz.w, sz.h)
		b.Run(sz.name, func(b *testing.B) {
			c, err := New(cfg, Deps{Metrics: func() *Metrics { m, _ := NewMetrics(prometheus.NewRegistry()); return m }()})
			if err != nil {
				b.Fatal(err)
			}
			for _, f := range frames[:40] { // learn the background
				c.Process(context.Background(), f)
			}
			i := 40
			b.ResetTimer()
			for b.Loop() {
				c.Process(context.Background(), frames[i])
				i++
				if i == len(frames) {
					i = 40
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/frame")
		})
	}
}
