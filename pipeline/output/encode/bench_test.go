package encode

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/frame"
)

// realFrames decodes n frames of vtest.avi at 1280x720, 15 fps, and passes
// them through a blur stage (no faces to find) to get obscured frames.
func realFrames(b *testing.B, n int) []*blur.Frame {
	cmd := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
		"-vf", "scale=1280:720,fps=15", "-frames:v", "60", "-f", "rawvideo", "-pix_fmt", "bgr24", "-")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	m, _ := blur.NewMetrics(prometheus.NewRegistry())
	st, err := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close(context.Background())
	st.WarmUp(context.Background(), 1280, 720)
	var fs []*blur.Frame
	t0 := time.Now()
	for i := 0; i < n; i++ {
		pts := time.Duration(i) * time.Second / 15
		raw := frame.NewRaw(frame.Meta{Seq: uint64(i), PTS: pts, Captured: t0.Add(pts)}, 1280, 720)
		if _, err := io.ReadFull(out, raw.Pix); err != nil {
			b.Fatal(err)
		}
		f, err := st.Obscure(context.Background(), raw)
		if err != nil {
			b.Fatal(err)
		}
		fs = append(fs, f)
	}
	return fs
}

// BenchmarkEncode is the recording cost per 1280x720 frame for each x264
// preset veil accepts: ms of one core per frame and bytes per frame, on 60
// real camera frames (vtest.avi scaled to 720p, 15 fps).
func BenchmarkEncode(b *testing.B) {
	fs := realFrames(b, 60)
	for _, preset := range []string{"ultrafast", "superfast", "veryfast", "faster"} {
		b.Run(preset, func(b *testing.B) {
			dir := b.TempDir()
			var bytes int64
			frames := 0
			for i := 0; b.Loop(); i++ {
				path := filepath.Join(dir, "seg.mp4")
				w, err := Create(path, Options{Width: 1280, Height: 720, Preset: preset})
				if err != nil {
					b.Fatal(err)
				}
				for _, f := range fs {
					if err := w.Write(f); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(context.Background()); err != nil {
					b.Fatal(err)
				}
				st, _ := os.Stat(path)
				bytes += st.Size()
				frames += len(fs)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(frames), "ms/frame")
			b.ReportMetric(float64(bytes)/float64(frames), "bytes/frame")
		})
	}
}
