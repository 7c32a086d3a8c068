package blur

import (
	"fmt"
	"image"
	"testing"
)

// BenchmarkObscure is the obscuring alone: six faces, each a tenth of the
// frame height, enlarged by the default margin.
func BenchmarkObscure(b *testing.B) {
	for _, sz := range []struct {
		name string
		w, h int
	}{{"640x480", 640, 480}, {"1280x720", 1280, 720}, {"1920x1080", 1920, 1080}} {
		pix := make([]byte, sz.w*sz.h*3)
		for i := range pix {
			pix[i] = byte(i * 31)
		}
		fh := sz.h / 10
		var boxes []image.Rectangle
		for i := 0; i < 6; i++ {
			x, y := sz.w/8+i*sz.w/8, sz.h/3+(i%2)*fh
			boxes = append(boxes, enlarge(image.Rect(x, y, x+fh*4/5, y+fh), 0.25))
		}
		for _, mode := range []Mode{ModeBlur, ModeMosaic, ModeFill} {
			b.Run(fmt.Sprintf("%s/%s", mode, sz.name), func(b *testing.B) {
				o := obscurer{mode: mode, mosaicCells: 6, blurKernel: 1}
				for b.Loop() {
					for _, r := range boxes {
						o.region(pix, sz.w, sz.h, r)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/frame")
			})
		}
		b.Run("whole/"+sz.name, func(b *testing.B) {
			o := obscurer{}
			for b.Loop() {
				o.whole(pix, sz.w, sz.h)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/frame")
		})
	}
}
