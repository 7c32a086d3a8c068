package encode

import (
	"os/exec"
	"testing"
	"unsafe"

	"github.com/asticode/go-astiav"
)

// TestBGRToI420MatchesSwscale: libyuv's conversion gives the planes
// swscale gave (its default for these formats: BT.601, limited range)
// within two levels, on a real photo and on a top-left of it whose half
// sizes are odd, so recordings look as before. (At the bottom edge
// swscale interpolates chroma from beyond the last row pair, libyuv
// averages the pair: up to 8 levels on that one row of 89.)
func TestBGRToI420MatchesSwscale(t *testing.T) {
	const w, h = 640, 480
	pix, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/messi5.jpg",
		"-vf", "scale=640:480", "-f", "rawvideo", "-pix_fmt", "bgr24", "-").Output()
	if err != nil || len(pix) != w*h*3 {
		t.Fatalf("ffmpeg: %v (%d bytes)", err, len(pix))
	}
	for _, sz := range []struct{ w, h int }{{640, 480}, {322, 178}} {
		want := swscaleI420(t, pix, 3*w, sz.w, sz.h)
		got := astiav.AllocFrame()
		got.SetWidth(sz.w)
		got.SetHeight(sz.h)
		got.SetPixelFormat(astiav.PixelFormatYuv420P)
		if err := got.AllocBuffer(0); err != nil {
			t.Fatal(err)
		}
		p, ls := planes(got), got.Linesize()
		if err := bgrToI420(pix, 3*w, p[0], p[1], p[2], ls[0], ls[1], ls[2], sz.w, sz.h); err != nil {
			t.Fatal(err)
		}
		pw, wp := planes(want), want.Linesize()
		for i, dim := range [][2]int{{sz.w, sz.h}, {sz.w / 2, sz.h / 2}, {sz.w / 2, sz.h / 2}} {
			worst, sum := 0, 0
			for y := 0; y < dim[1]; y++ {
				a := unsafe.Slice((*byte)(unsafe.Add(p[i], y*ls[i])), dim[0])
				b := unsafe.Slice((*byte)(unsafe.Add(pw[i], y*wp[i])), dim[0])
				for x := range a {
					d := int(a[x]) - int(b[x])
					if d < 0 {
						d = -d
					}
					if y < dim[1]-1 && x < dim[0]-1 { // swscale filters the last chroma row its own way
						worst = max(worst, d)
					}
					sum += d
				}
			}
			mean := float64(sum) / float64(dim[0]*dim[1])
			t.Logf("%dx%d plane %d: largest difference inside %d, mean %.3f", sz.w, sz.h, i, worst, mean)
			if worst > 2 || mean > 0.6 {
				t.Errorf("%dx%d plane %d differs from swscale's by up to %d levels (mean %.3f)", sz.w, sz.h, i, worst, mean)
			}
		}
		got.Free()
		want.Free()
	}
	for _, bad := range []struct{ w, h, n int }{{3, 2, 100}, {4, 3, 100}, {4, 2, 10}, {0, 2, 100}} {
		if err := bgrToI420(make([]byte, bad.n), 3*bad.w, nil, nil, nil, 0, 0, 0, bad.w, bad.h); err == nil {
			t.Errorf("%dx%d from %d bytes was converted", bad.w, bad.h, bad.n)
		}
	}
}

// swscaleI420 is what the encoder did before libyuv.
func swscaleI420(t *testing.T, pix []byte, stride, w, h int) *astiav.Frame {
	t.Helper()
	src, dst := astiav.AllocFrame(), astiav.AllocFrame()
	defer src.Free()
	src.SetWidth(w)
	src.SetHeight(h)
	src.SetPixelFormat(astiav.PixelFormatBgr24)
	dst.SetWidth(w)
	dst.SetHeight(h)
	dst.SetPixelFormat(astiav.PixelFormatYuv420P)
	if err := src.AllocBuffer(0); err != nil {
		t.Fatal(err)
	}
	if err := dst.AllocBuffer(0); err != nil {
		t.Fatal(err)
	}
	p0 := planes(src)[0]
	for y := 0; y < h; y++ {
		copy(unsafe.Slice((*byte)(unsafe.Add(p0, y*src.Linesize()[0])), 3*w), pix[y*stride:])
	}
	sws, err := astiav.CreateSoftwareScaleContext(w, h, astiav.PixelFormatBgr24, w, h, astiav.PixelFormatYuv420P,
		astiav.NewSoftwareScaleContextFlags(astiav.SoftwareScaleContextFlagBilinear))
	if err != nil {
		t.Fatal(err)
	}
	defer sws.Free()
	if err := sws.ScaleFrame(src, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}
