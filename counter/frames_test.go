package counter

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/pipeline/frame"
)

// noFaces vouches for every frame and finds nothing: the synthetic scenes
// here have no faces, and the counter only needs blur.Frames.
type noFaces struct{}

func (noFaces) Detect(context.Context, blur.Image) ([]blur.Detection, error) { return nil, nil }
func (noFaces) Name() string                                                 { return "none" }

// syntheticWalk renders n frames (W x H) of a grey, lightly textured scene
// with a dark 30x90 figure walking left to right across x = W/2, starting
// after a few empty frames so the background can be learnt.
func syntheticWalk(t *testing.T, n, fps int) []*blur.Frame {
	t.Helper()
	m, err := blur.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st, err := blur.New(blur.Config{}, blur.Deps{Detector: noFaces{}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	if err := st.WarmUp(context.Background(), W, H); err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1700000000, 0)
	var out []*blur.Frame
	for i := 0; i < n; i++ {
		pts := time.Duration(i) * time.Second / time.Duration(fps)
		raw := frame.NewRaw(frame.Meta{Camera: "cam", Seq: uint64(i), PTS: pts, Captured: start.Add(pts)}, W, H)
		for y := 0; y < H; y++ {
			for x := 0; x < W; x++ {
				v := byte(120 + (x*7+y*13)%9)
				o := (y*W + x) * 3
				raw.Pix[o], raw.Pix[o+1], raw.Pix[o+2] = v, v, v
			}
		}
		if i >= 35 {
			cx := 200 + (i-35)*8
			for y := 250; y < 340; y++ {
				for x := cx - 15; x < cx+15; x++ {
					if x >= 0 && x < W {
						o := (y*W + x) * 3
						raw.Pix[o], raw.Pix[o+1], raw.Pix[o+2] = 20, 30, 40
					}
				}
			}
		}
		f, err := st.Obscure(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}
