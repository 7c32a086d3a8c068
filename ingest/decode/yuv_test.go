package decode

import (
	"fmt"
	"testing"
)

// TestLibyuvMatchesSwscale decodes each codec's stream twice, converting
// with libyuv and with swscale (which converted every picture before),
// and compares the BGR pictures: libyuv must not change what the detector
// and the recordings see. MJPEG decodes to full-range yuvj420p, the others
// to limited-range yuv420p, so both of libyuv's paths are compared. The
// two round differently (libyuv's coefficients have 6 fractional bits):
// measured, up to 4 levels, and 0.7% of values (H.264) by more than 2.
func TestLibyuvMatchesSwscale(t *testing.T) {
	type stream struct {
		c    Codec
		w, h int
	}
	var streams []stream
	for _, c := range allCodecs {
		streams = append(streams, stream{c, 1280, 720})
	}
	// JPEG may have odd sides (H.264 and H.265 4:2:0 may not): the last
	// column and row have chroma of their own.
	streams = append(streams, stream{CodecMJPEG, 321, 241})
	for _, st := range streams {
		c, size := st.c, fmt.Sprintf("%dx%d", st.w, st.h)
		t.Run(c.String()+"/"+size, func(t *testing.T) {
			units := streamSized(t, c, size)
			fast, err := New(c, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fast.Close()
			ref, err := New(c, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			ref.swscaleOnly = true
			pictures, worst, off := 0, 0, 0
			for _, u := range units {
				var a, b []byte
				okA, errA := fast.Decode(u, func(w, h int) []byte { a = picture(w, h); return a })
				okB, errB := ref.Decode(u, func(w, h int) []byte { b = picture(w, h); return b })
				if errA != nil || errB != nil || okA != okB {
					t.Fatalf("libyuv: %v %v, swscale: %v %v", okA, errA, okB, errB)
				}
				if !okA {
					continue
				}
				pictures++
				for i := range a {
					d := int(a[i]) - int(b[i])
					d = max(d, -d)
					worst = max(worst, d)
					if d > 2 {
						off++
					}
				}
			}
			if pictures == 0 {
				t.Fatal("no pictures decoded")
			}
			values := pictures * st.w * st.h * 3
			t.Logf("%d pictures: largest difference %d levels, %d of %d values differ by more than 2", pictures, worst, off, values)
			if worst > 4 || off > values/100 {
				t.Errorf("libyuv's BGR differs from swscale's: up to %d levels, %d values by more than 2", worst, off)
			}
		})
	}
}
