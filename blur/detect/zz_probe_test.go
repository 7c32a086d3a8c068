package detect

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/pipeline/frame"
)

type countingDet struct {
	d     blur.Detector
	sizes map[string]int
	ms    map[string]time.Duration
}

func (c *countingDet) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	k := fmt.Sprintf("%dx%d", img.Width, img.Height)
	c.sizes[k]++
	st := time.Now()
	r, err := c.d.Detect(ctx, img)
	c.ms[k] += time.Since(st)
	return r, err
}
func (c *countingDet) Name() string { return "c" }

func TestProbeStageReal(t *testing.T) {
	d, err := New(Config{}, nil)
	if err != nil {
		t.Skip(err)
	}
	defer d.Close()
	clip := os.Getenv("HOME") + "/.cache/veil/bench/vtest-720p15.mp4"
	cmd := exec.Command("ffmpeg", "-v", "error", "-i", clip, "-t", "20", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1")
	out, _ := cmd.StdoutPipe()
	cmd.Start()
	defer cmd.Wait()
	cd := &countingDet{d: d, sizes: map[string]int{}, ms: map[string]time.Duration{}}
	reg := prometheus.NewRegistry()
	m, _ := blur.NewMetrics(reg)
	cfg := blur.Config{Search: blur.SearchRegions}
	s, err := blur.New(cfg, blur.Deps{Camera: "cam", Detector: cd, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	n := 0
	st := time.Now()
	for i := 0; ; i++ {
		raw := frame.NewRaw(frame.Meta{Camera: "cam", Seq: uint64(i), PTS: time.Duration(i) * time.Second / 15}, 1280, 720)
		if _, err := io.ReadFull(out, raw.Pix); err != nil {
			break
		}
		s.Obscure(context.Background(), raw)
		n++
	}
	el := time.Since(st)
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "veil_blur_searches_total" {
			for _, mm := range mf.GetMetric() {
				t.Logf("%v %v", mm.GetLabel(), mm.GetCounter().GetValue())
			}
		}
	}
	var tot time.Duration
	for k, v := range cd.ms {
		tot += v
		t.Logf("%s: %d calls, %.1f ms each, %.0f ms total", k, cd.sizes[k], float64(v.Milliseconds())/float64(cd.sizes[k]), float64(v.Milliseconds()))
	}
	t.Logf("%d frames in %v: %.1f ms/frame detect", n, el, float64(tot.Milliseconds())/float64(n))
}
