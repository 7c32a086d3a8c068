package detect

import (
	"context"
	"fmt"
	"image"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/frame"
)

// benchSizes are the frame sizes the README reports.
var benchSizes = []struct {
	name string
	w, h int
}{{"640x480", 640, 480}, {"1280x720", 1280, 720}, {"1920x1080", 1920, 1080}}

// resized stretches a real photo (t1.jpg: six faces) to w x h with
// nearest-neighbour sampling, so the detector works on real content.
func resized(b testing.TB, w, h int) *frame.Raw {
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
		{"centerface-onnxruntime", Config{Runtime: RuntimeONNXRuntime}},
		{"centerface-openvino-f32", Config{Precision: "f32"}},
		{"centerface-openvino-bf16", Config{Precision: "bf16"}},
		{"centerface-openvino-int8", Config{Precision: "int8"}},
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

// timedDetector counts what a Detector is asked to search and the time it
// takes.
type timedDetector struct {
	blur.Detector
	calls, pixels int
	spent         time.Duration
}

func (d *timedDetector) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	start := time.Now()
	dets, err := d.Detector.Detect(ctx, img)
	d.spent += time.Since(start)
	d.calls++
	d.pixels += img.Width * img.Height
	return dets, err
}

// BenchmarkRegionSearch is the detector's work for one camera in regions
// mode (the service's default): a stage on the first 300 frames of
// vtest.avi (people walking, scaled to 1280x720) with the detector on
// one thread, as each lane of a busy engine has. It reports the detector's
// time, calls and pixels per frame, sweeps included (every 15th frame, a
// sweep a second at 15 fps).
func BenchmarkRegionSearch(b *testing.B) {
	const w, h, frames = 1280, 720, 300
	clip := readClip(b, w, h, frames)
	inner, err := New(Config{ModelDir: DefaultModelDir(), Threads: 1, Lanes: 1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer inner.Close()
	// Compiled first, as the service does while its cameras connect
	// (Prepare): compiling the six networks inside the timed calls had
	// counted 3-6 s of compiling as detector time.
	if p, ok := inner.(interface {
		Prepare(context.Context, []image.Point) error
	}); ok {
		if err := p.Prepare(context.Background(), append(blur.CropSizes(), image.Pt(w, h))); err != nil {
			b.Fatal(err)
		}
	}
	det := &timedDetector{Detector: inner}
	for b.Loop() {
		st := regionStage(b, det)
		for i, pix := range clip {
			// Buffers go round as in the service (frame.Reuse, Frame.Done),
			// not a fresh 2.7 MB slice a frame, whose page faults ran
			// beside the timed detector: on the Xeon, before the networks
			// were compiled ahead, system time fell from 12-18 to 9-11 s a
			// run (alternated).
			raw := frame.Reuse(frame.Meta{Seq: uint64(i), PTS: time.Duration(i) * time.Second / 15}, w, h)
			copy(raw.Pix, pix)
			f, err := st.Obscure(context.Background(), raw)
			if err != nil || f.FailClosed() != "" {
				b.Fatalf("frame %d: %v %v", i, err, f)
			}
			f.Share(1)
			f.Done()
		}
		_ = st.Close(context.Background())
	}
	n := float64(b.N * frames)
	b.ReportMetric(float64(det.spent.Milliseconds())/n, "detect-ms/frame")
	b.ReportMetric(float64(det.calls)/n, "calls/frame")
	b.ReportMetric(float64(det.pixels)/n/1000, "kpx/frame")
}

// readClip decodes the first frames of vtest.avi at w x h, BGR.
func readClip(tb testing.TB, w, h, frames int) [][]byte {
	const path = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-frames:v", strconv.Itoa(frames),
		"-vf", fmt.Sprintf("scale=%d:%d", w, h), "-sws_flags", "bilinear", "-f", "rawvideo", "-pix_fmt", "bgr24", "-").Output()
	if err != nil {
		tb.Fatalf("ffmpeg reading %s: %v", path, err)
	}
	n := w * h * 3
	if len(out) != frames*n {
		tb.Fatalf("%s: %d bytes, want %d frames of %d", path, len(out), frames, n)
	}
	clip := make([][]byte, frames)
	for i := range clip {
		clip[i] = out[i*n : (i+1)*n]
	}
	return clip
}
