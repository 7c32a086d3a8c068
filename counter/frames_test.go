package counter

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/frame"
)

// syntheticWalk renders n frames (W x H) of a grey, lightly textured scene
// with a dark 30x90 figure walking left to right across x = W/2, starting
// after a few empty frames so the background can be learnt.
func syntheticWalk(t *testing.T, n, fps int) []*blur.Frame {
	return renderWalks(t, n, fps, func(int) (int, int) { return W, H }, []int{35})
}

// renderWalks renders n frames of the scene at the size size(i) gives frame
// i, with one figure for each start frame in starts, walking from x = W/4
// (in W x H units, scaled to the frame) across the middle: 8 units a frame,
// so it crosses x = W/2 25 frames after it starts.
func renderWalks(t *testing.T, n, fps int, size func(i int) (int, int), starts []int) []*blur.Frame {
	t.Helper()
	m, err := blur.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st, err := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: m})
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
		w, h := size(i)
		sx, sy := float64(w)/W, float64(h)/H
		pts := time.Duration(i) * time.Second / time.Duration(fps)
		raw := frame.NewRaw(frame.Meta{Camera: "cam", Seq: uint64(i), PTS: pts, Captured: start.Add(pts)}, w, h)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := byte(120 + (x*7+y*13)%9)
				o := (y*w + x) * 3
				raw.Pix[o], raw.Pix[o+1], raw.Pix[o+2] = v, v, v
			}
		}
		for _, s := range starts {
			if i < s || i > s+60 {
				continue
			}
			cx := 200 + float64(i-s)*8
			for y := int(250 * sy); y < int(340*sy); y++ {
				for x := int((cx - 15) * sx); x < int((cx+15)*sx); x++ {
					if x >= 0 && x < w {
						o := (y*w + x) * 3
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
