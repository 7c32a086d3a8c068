package encode

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/frame"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// camera obscures the frames of a 15 fps camera running for d whose frames
// survive with probability keep (the rest dropped before blur, as a busy
// detector makes a live queue drop them).
func camera(t *testing.T, d time.Duration, keep float64, w, h int) []*blur.Frame {
	m, _ := blur.NewMetrics(prometheus.NewRegistry())
	st, err := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	st.WarmUp(context.Background(), w, h)
	r := rand.New(rand.NewPCG(1, 2))
	var out []*blur.Frame
	t0 := time.Now()
	n := int(d / (time.Second / 15))
	for i := 0; i < n; i++ {
		if i != 0 && i != n-1 && r.Float64() > keep { // first and last kept: the span is d
			continue
		}
		pts := time.Duration(i) * time.Second / 15
		raw := frame.NewRaw(frame.Meta{Camera: "c", Seq: uint64(i), PTS: pts, Captured: t0.Add(pts)}, w, h)
		for j := range raw.Pix {
			raw.Pix[j] = byte(i*7 + j%251)
		}
		f, err := st.Obscure(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func probe(t *testing.T, path string) (frames int, pts []float64) {
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	for _, l := range strings.Fields(string(out)) {
		v, err := strconv.ParseFloat(strings.TrimSuffix(l, ","), 64)
		if err != nil {
			t.Fatalf("pts %q", l)
		}
		pts = append(pts, v)
	}
	return len(pts), pts
}

// TestFileLastsItsWallTime: a 15 fps camera of which only some frames
// survive is written with each frame at its own time, so the file spans
// the camera's 10 s within one frame interval, and every frame is where
// the camera took it.
func TestFileLastsItsWallTime(t *testing.T) {
	for _, keep := range []float64{1, 0.38, 0.1} {
		t.Run(strconv.FormatFloat(keep, 'f', 2, 64), func(t *testing.T) {
			fs := camera(t, 10*time.Second, keep, 320, 240)
			path := filepath.Join(t.TempDir(), "seg.mp4")
			w, err := Create(path, Options{Width: 320, Height: 240, Preset: "ultrafast"})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				if err := w.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			n, pts := probe(t, path)
			if n != len(fs) {
				t.Fatalf("%d frames decoded, %d written", n, len(fs))
			}
			for i, f := range fs {
				want := (f.Meta().PTS - fs[0].Meta().PTS).Seconds()
				if d := pts[i] - want; d > 0.002 || d < -0.002 {
					t.Errorf("frame %d at %.3f s, taken at %.3f s", i, pts[i], want)
				}
			}
			span := pts[len(pts)-1] - pts[0]
			if wall := (fs[len(fs)-1].Meta().PTS - fs[0].Meta().PTS).Seconds(); span < wall-1.0/15 || span > wall+1.0/15 {
				t.Errorf("file spans %.3f s, the camera %.3f s", span, wall)
			}
			t.Logf("keep %.2f: %d frames over %.3f s", keep, n, span)
		})
	}
}

func TestAbandonedLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(filepath.Join(dir, "x.mp4"), Options{Width: 64, Height: 48})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range camera(t, time.Second, 1, 64, 48) {
		w.Write(f)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Close(ended); err == nil {
		t.Error("an abandoned file reported success")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left %v", left)
	}
	odd, err := Create(filepath.Join(dir, "odd.mp4"), Options{Width: 65, Height: 49})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range camera(t, time.Second, 1, 65, 49) {
		if err := odd.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := odd.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", filepath.Join(dir, "odd.mp4")).Output(); strings.TrimSpace(string(out)) != "64,48" {
		t.Errorf("odd-sized frames encoded as %q, want 64,48", out)
	}
	os.Remove(filepath.Join(dir, "odd.mp4"))
	if _, err := Create("/proc/no/x.mp4", Options{Width: 64, Height: 48}); err == nil || !strings.Contains(err.Error(), "/proc/no/x.mp4") {
		t.Errorf("unwritable: %v", err)
	}
}

// TestWriterFreesWhatLibavAllocates: libav's encoder, scaler, frames and
// muxer are freed on Close, finished or abandoned: making 60 files does
// not grow the process (leaking them grows it by megabytes per file).
func TestWriterFreesWhatLibavAllocates(t *testing.T) {
	fs := camera(t, time.Second, 1, 640, 360)
	dir := t.TempDir()
	cycle := func(i int) {
		w, err := Create(filepath.Join(dir, strconv.Itoa(i)+".mp4"), Options{Width: 640, Height: 360, Preset: "ultrafast"})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs[:5] {
			w.Write(f)
		}
		ctx := context.Background()
		if i%2 == 1 {
			c, cancel := context.WithCancel(ctx)
			cancel()
			ctx = c
		}
		w.Close(ctx)
		os.Remove(filepath.Join(dir, strconv.Itoa(i)+".mp4"))
	}
	// glibc keeps freed memory and moves its mmap threshold up as large
	// blocks are freed, so RSS climbs for a while and then plateaus, by a
	// different amount each run (up to about 20 MiB here). A leak keeps
	// climbing: 120 files are written twice and only the second round's
	// growth counts, at most 30 MiB, a quarter of a MiB a file (a Writer
	// that freed nothing measured +1378 MiB over 60 files).
	for i := range 20 {
		cycle(i)
	}
	const n = 120
	r0 := rss(t)
	for i := range n {
		cycle(i)
	}
	r1 := rss(t)
	for i := range n {
		cycle(i)
	}
	grew := rss(t) - r1
	t.Logf("RSS grew %.1f MiB over the first %d files, %.1f MiB over the next %d", float64(r1-r0)/(1<<20), n, float64(grew)/(1<<20), n)
	if grew > 30<<20 {
		t.Errorf("RSS grew %.0f MiB over %d files after the plateau: libav objects leak", float64(grew)/(1<<20), n)
	}
}

func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	var size, res int64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		t.Fatal(err)
	}
	return res * int64(os.Getpagesize())
}
