package detect

import (
	"context"
	"image"
	"os/exec"
	"strconv"
	"testing"

	"github.com/veilproject/veil/blur"
)

const vtestClip = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

// vtestFrame decodes frame n of vtest.avi (768x576) to BGR.
func vtestFrame(t testing.TB, n int) blur.Image {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", vtestClip, "-vf", "select=eq(n\\,"+itoa(n)+")", "-fps_mode", "passthrough",
		"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgr24", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	if len(out) != 768*576*3 {
		t.Fatalf("frame %d: %d bytes", n, len(out))
	}
	return blur.Image{Width: 768, Height: 576, Pix: out}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPeopleMatchReference runs NanoDet on OpenVINO (f32) in square tiles
// and compares it with the reference decoding: the same ONNX model run by
// ONNX Runtime from Python, decoded and joined in numpy, on three frames
// of vtest.avi (threshold 0.35). Every person the reference boxed must be
// boxed here too.
func TestPeopleMatchReference(t *testing.T) {
	model, err := ReadPersonModel(DefaultModelDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewOpenVINOPeople(model, OpenVINOOptions{LibDir: DefaultRuntimeDir(), Threshold: 0.35, Precision: "f32", Lanes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	det := &Tiles{Det: p}
	cases := []struct {
		frame int
		n     int
		some  []image.Rectangle
	}{
		{100, 9, []image.Rectangle{image.Rect(493, 149, 518, 219), image.Rect(515, 152, 542, 219), image.Rect(376, 178, 407, 257)}},
		{300, 8, []image.Rectangle{image.Rect(618, 160, 644, 232), image.Rect(186, 160, 219, 234), image.Rect(581, 160, 611, 235)}},
		{700, 10, []image.Rectangle{image.Rect(274, 209, 308, 294), image.Rect(683, 215, 728, 307), image.Rect(366, 171, 396, 256)}},
	}
	for _, c := range cases {
		dets, err := det.Detect(context.Background(), vtestFrame(t, c.frame))
		if err != nil {
			t.Fatal(err)
		}
		if d := len(dets) - c.n; d < -1 || d > 1 {
			t.Errorf("frame %d: %d people, reference %d", c.frame, len(dets), c.n)
		}
		for _, want := range c.some {
			best := 0.0
			for _, d := range dets {
				best = max(best, blur.IoU(d.Box, want))
			}
			if best < 0.7 {
				t.Errorf("frame %d: no box matches the reference's %v (best IoU %.2f): %v", c.frame, want, best, dets)
			}
		}
	}
}

func TestTileRects(t *testing.T) {
	for _, c := range []struct {
		w, h int
		want []image.Rectangle
	}{
		{416, 416, []image.Rectangle{image.Rect(0, 0, 416, 416)}},
		{1280, 720, []image.Rectangle{image.Rect(0, 0, 720, 720), image.Rect(560, 0, 1280, 720)}},
		{768, 576, []image.Rectangle{image.Rect(0, 0, 576, 576), image.Rect(192, 0, 768, 576)}},
		{360, 640, []image.Rectangle{image.Rect(0, 0, 360, 360), image.Rect(0, 280, 360, 640)}},
		{1920, 540, []image.Rectangle{image.Rect(0, 0, 540, 540), image.Rect(460, 0, 1000, 540), image.Rect(920, 0, 1460, 540), image.Rect(1380, 0, 1920, 540)}},
	} {
		got := TileRects(c.w, c.h)
		if len(got) != len(c.want) {
			t.Errorf("%dx%d: %v, want %v", c.w, c.h, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%dx%d: %v, want %v", c.w, c.h, got, c.want)
			}
		}
	}
}

// TestMergeTilesKeepsHiddenPeople: a box inside another is a person
// partly hidden unless it is cut by a tile's seam.
func TestMergeTilesKeepsHiddenPeople(t *testing.T) {
	big := blur.Detection{Box: image.Rect(100, 100, 200, 300), Score: 0.9}
	part := blur.Detection{Box: image.Rect(150, 120, 200, 280), Score: 0.5}
	if got := mergeTiles([]blur.Detection{big, part}, []bool{false, false}); len(got) != 2 {
		t.Errorf("not at a seam: %v, want both", got)
	}
	if got := mergeTiles([]blur.Detection{big, part}, []bool{false, true}); len(got) != 1 || got[0] != big {
		t.Errorf("at a seam: %v, want the whole one", got)
	}
}

// BenchmarkPeople is one person detection of a 1280x720 frame (vtest
// scaled, two square tiles), as the counter asks for it Rate times a
// second per camera; the network is compiled before timing.
func BenchmarkPeople(b *testing.B) {
	model, err := ReadPersonModel(DefaultModelDir())
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewOpenVINOPeople(model, OpenVINOOptions{LibDir: DefaultRuntimeDir(), Threshold: PeopleThreshold, Lanes: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", vtestClip, "-vf", "select=eq(n\\,300),scale=1280:720", "-fps_mode", "passthrough",
		"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "bgr24", "-").Output()
	if err != nil {
		b.Fatal(err)
	}
	img := blur.Image{Width: 1280, Height: 720, Pix: out}
	det := &Tiles{Det: p}
	if _, err := det.Detect(context.Background(), img); err != nil { // compiles
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := det.Detect(context.Background(), img); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(TileRects(1280, 720))), "tiles")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/detection")
	b.Logf("precision %s", p.Precision())
}
