package detect

import (
	"context"
	"fmt"
	"testing"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/pipeline/frame"
)

// benchSizes are the frame sizes the README reports.
var benchSizes = []struct {
	name string
	w, h int
}{{"640x480", 640, 480}, {"1280x720", 1280, 720}, {"1920x1080", 1920, 1080}}

// resized stretches a real photo (t1.jpg: six faces) to w x h with
// nearest-neighbour sampling, so the detector works on real content.
func resized(b *testing.B, w, h int) *frame.Raw {
	src := loadBGR(b, "t1.jpg")
	out := frame.NewRaw(frame.Meta{}, w, h)
	for y := 0; y < h; y++ {
		sy := y * src.Height / h
		for x := 0; x < w; x++ {
			sx := x * src.Width / w
			copy(out.Pix[(y*w+x)*3:(y*w+x)*3+3], src.Pix[(sy*src.Width+sx)*3:])
		}
	}
	return out
}

// BenchmarkDetect is the detector alone, per frame (ms/frame = ns/op / 1e6).
func BenchmarkDetect(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"centerface-opencv", Config{Runtime: RuntimeOpenCV}},
		{"centerface-openvino-f32", Config{Precision: "f32"}},
		{"centerface-openvino-bf16", Config{Precision: "bf16"}},
		{"haar", Config{Kind: KindHaar}},
	} {
		c.cfg.ModelDir = DefaultModelDir()
		kind := c.name
		det, err := New(c.cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, sz := range benchSizes {
			raw := resized(b, sz.w, sz.h)
			img := blur.Image{Width: sz.w, Height: sz.h, Pix: raw.Pix}
			b.Run(fmt.Sprintf("%s/%s", kind, sz.name), func(b *testing.B) {
				if _, err := det.Detect(context.Background(), img); err != nil { // warm: net built for this size
					b.Fatal(err)
				}
				b.ResetTimer()
				faces := 0
				for b.Loop() {
					d, err := det.Detect(context.Background(), img)
					if err != nil {
						b.Fatal(err)
					}
					faces = len(d)
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/frame")
				b.ReportMetric(float64(faces), "faces")
			})
		}
		det.Close()
	}
}
