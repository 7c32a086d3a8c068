package record

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/pipeline/output/encode"
	"go.uber.org/goleak"
)

// No test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// frames makes n obscured 64x48 frames at 10 fps.
func frames(t *testing.T, n int) []*blur.Frame {
	m, _ := blur.NewMetrics(prometheus.NewRegistry())
	st, err := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	st.WarmUp(context.Background(), 64, 48)
	var out []*blur.Frame
	t0 := time.Now()
	for i := 0; i < n; i++ {
		pts := time.Duration(i) * 100 * time.Millisecond
		f, err := st.Obscure(context.Background(), frame.NewRaw(frame.Meta{Camera: "c", Seq: uint64(i), PTS: pts, Captured: t0.Add(pts)}, 64, 48))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// feeder encodes frames as the camera's live.Stream does (one encoder per
// picture size) and hands the packets to a recorder.
type feeder struct {
	t   *testing.T
	r   *Recorder
	enc *encode.Encoder
}

func (fd *feeder) Write(f *blur.Frame) {
	if fd.enc != nil {
		if w, h := fd.enc.Size(); w != f.Width() || h != f.Height() {
			fd.flush()
		}
	}
	if fd.enc == nil {
		var err error
		if fd.enc, err = encode.NewEncoder(encode.Options{Width: f.Width(), Height: f.Height(), Preset: fd.r.Preset()}); err != nil {
			fd.t.Fatal(err)
		}
	}
	pkts, err := fd.enc.Encode(f)
	if err != nil {
		fd.t.Fatal(err)
	}
	for _, p := range pkts {
		fd.r.Write(fd.enc, p, f.Meta().Captured)
	}
}

func (fd *feeder) flush() {
	pkts, _ := fd.enc.Flush()
	for _, p := range pkts {
		fd.r.Write(fd.enc, p, time.Now())
	}
	fd.enc.Free()
	fd.enc = nil
}

func (fd *feeder) Close(ctx context.Context) error {
	if fd.enc != nil {
		fd.flush()
	}
	return fd.r.Close(ctx)
}

func TestSegmentsRotate(t *testing.T) {
	dir := t.TempDir()
	m, _ := NewMetrics(prometheus.NewRegistry())
	os.MkdirAll(filepath.Join(dir, "c"), 0o755)
	os.WriteFile(filepath.Join(dir, "c", ".old.mp4.partial"), []byte("x"), 0o644) // a crash's leftover
	r, err := New(Config{Dir: dir, Segment: time.Second}, "c", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	fd := &feeder{t: t, r: r}
	for _, f := range frames(t, 35) { // 3.5 s: three full segments and a half
		fd.Write(f)
	}
	if err := fd.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "c", "*.mp4"))
	hidden, _ := filepath.Glob(filepath.Join(dir, "c", ".*"))
	if len(segs) != 4 || len(hidden) != 0 || testutil.ToFloat64(m.segments.WithLabelValues("c")) != 4 {
		t.Errorf("segments %v hidden %v", segs, hidden)
	}
}

func TestUnwritableDiskIsAnErrorNotACrash(t *testing.T) {
	dir := t.TempDir()
	m, _ := NewMetrics(prometheus.NewRegistry())
	r, err := New(Config{Dir: dir, Segment: time.Second}, "c", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(r.dir, 0o500) // as good as a full disk for opening a file
	defer os.Chmod(r.dir, 0o750)
	if os.Geteuid() == 0 {
		// root ignores permissions: use a path that cannot be a directory.
		r.dir = "/proc/veil-no-such-dir"
	}
	fd := &feeder{t: t, r: r}
	for _, f := range frames(t, 5) {
		fd.Write(f)
	}
	if v := testutil.ToFloat64(m.errors.WithLabelValues("c", "open")); v != 1 {
		t.Errorf("open errors %v, want 1 (then a 10 s pause)", v)
	}
}

func TestRetentionByAgeAndSize(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a"), 0o755)
	now := time.Now()
	write := func(name string, age time.Duration, size int) {
		p := filepath.Join(dir, "a", name)
		os.WriteFile(p, make([]byte, size), 0o644)
		os.Chtimes(p, now.Add(-age), now.Add(-age))
	}
	seg := func(i int) string { return fmt.Sprintf("a-20261207T10%02d00.000Z.mp4", i) }
	write(seg(1), 5*time.Hour, 100)
	write(seg(2), 90*time.Minute, 600<<10)
	write(seg(3), 60*time.Minute, 600<<10)
	write(seg(4), time.Minute, 600<<10)
	write(".a-20261207T100500.000Z.mp4.partial", 10*time.Hour, 100) // in progress: never touched
	write("clip.mp4", 10*time.Hour, 100)                            // not veil's: never touched
	m, _ := NewMetrics(prometheus.NewRegistry())
	ret := &Retention{Config: Config{Dir: dir, Keep: 4 * time.Hour, MaxBytes: 1300 << 10}, Metrics: m}
	if err := ret.Enforce(); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "a", "*"))
	hidden, _ := filepath.Glob(filepath.Join(dir, "a", ".*"))
	names := map[string]bool{}
	for _, p := range append(left, hidden...) {
		names[filepath.Base(p)] = true
	}
	if names[seg(1)] || names[seg(2)] || !names[seg(3)] || !names[seg(4)] || !names[".a-20261207T100500.000Z.mp4.partial"] || !names["clip.mp4"] {
		t.Errorf("left %v", names)
	}
	if testutil.ToFloat64(m.deleted.WithLabelValues("age")) != 1 || testutil.ToFloat64(m.deleted.WithLabelValues("size")) != 1 {
		t.Error("deletions not counted by reason")
	}
	// The wall clock set a year ahead: nothing more is deleted by age.
	ret.clock.Wall = func() time.Time { return time.Now().Add(365 * 24 * time.Hour) }
	if err := ret.Enforce(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", seg(4))); err != nil {
		t.Errorf("after the clock jumped a year: %v", err)
	}
	if testutil.ToFloat64(m.free) <= 0 {
		t.Error("no free-space reading")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Dir: "/x", Segment: time.Millisecond}, "recordings.segment"},
		{Config{Dir: "/x", Segment: time.Hour, Keep: time.Minute}, "recordings.keep"},
		{Config{Dir: "/x", MaxBytes: 5}, "recordings.max_bytes"},
		{Config{Dir: "/x", Preset: "placebo"}, "recordings.preset"},
	} {
		c := tc.c
		c.Defaults()
		if err := c.Validate("recordings"); err == nil || err.Error()[:len(tc.want)] != tc.want {
			t.Errorf("%+v: %v", tc.c, err)
		}
	}
}

// TestSegmentsLastTheirWallTime: a 15 fps camera of which only 38% of
// frames are obscured (the rest dropped before blur, as on a busy box)
// is recorded in 2 s segments; each segment spans the wall time between
// its first and last frame within one frame interval, and the segments
// together cover the camera's time.
func TestSegmentsLastTheirWallTime(t *testing.T) {
	dir := t.TempDir()
	m, _ := NewMetrics(prometheus.NewRegistry())
	r, err := New(Config{Dir: dir, Segment: 2 * time.Second, Preset: "ultrafast"}, "c", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := frames15(t, 7*time.Second)
	var kept []*blur.Frame
	for i, f := range all {
		if i%8 == 0 || i%8 == 3 || i%8 == 5 || i == len(all)-1 { // 3 of every 8
			kept = append(kept, f)
		}
	}
	fd := &feeder{t: t, r: r}
	for _, f := range kept {
		fd.Write(f)
	}
	if err := fd.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The segments the recorder should have cut: a new one at the first
	// frame 2 s or more after the current one's first.
	var groups [][]time.Duration
	for _, f := range kept {
		p := f.Meta().PTS
		if len(groups) == 0 || p >= groups[len(groups)-1][0]+2*time.Second {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], p)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "c", "*.mp4"))
	if len(segs) != len(groups) || len(segs) != 4 {
		t.Fatalf("segments %v, want 4 for 7 s in 2 s segments", segs)
	}
	frameInterval := 1.0 / 15
	covered := 0.0
	for i, s := range segs {
		out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0", s).Output()
		if err != nil {
			t.Fatal(err)
		}
		var pts []float64
		for _, l := range strings.Fields(string(out)) {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(l, ","), 64)
			pts = append(pts, v)
		}
		span := pts[len(pts)-1] - pts[0]
		// The wall time this segment's frames cover, from their timestamps.
		g := groups[i]
		wall := (g[len(g)-1] - g[0]).Seconds()
		if len(pts) != len(g) {
			t.Errorf("segment %d has %d frames, want %d", i, len(pts), len(g))
		}
		if span < wall-frameInterval || span > wall+frameInterval {
			t.Errorf("segment %d spans %.3f s, its frames cover %.3f s of wall time", i, span, wall)
		}
		covered += span
	}
	if covered < 7-4*2*frameInterval-0.6 { // gaps between segments: at most one dropped run each
		t.Errorf("segments cover %.2f s of a 7 s camera", covered)
	}
}

// frames15 makes the obscured frames of a 320x240 camera at 15 fps.
func frames15(t *testing.T, d time.Duration) []*blur.Frame {
	m, _ := blur.NewMetrics(prometheus.NewRegistry())
	st, err := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	st.WarmUp(context.Background(), 320, 240)
	var out []*blur.Frame
	t0 := time.Now()
	for i := 0; time.Duration(i)*time.Second/15 < d; i++ {
		pts := time.Duration(i) * time.Second / 15
		f, err := st.Obscure(context.Background(), frame.NewRaw(frame.Meta{Camera: "c", Seq: uint64(i), PTS: pts, Captured: t0.Add(pts)}, 320, 240))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// TestNoSingleFrameSegment: the first frame, then nothing for 3 s (the
// detector warming up while a live queue drops frames): the first segment
// still gets a second picture, so no segment is one picture that does not
// play.
func TestNoSingleFrameSegment(t *testing.T) {
	dir := t.TempDir()
	m, _ := NewMetrics(prometheus.NewRegistry())
	r, err := New(Config{Dir: dir, Segment: 2 * time.Second, Preset: "ultrafast"}, "c", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	fd := &feeder{t: t, r: r}
	for i, f := range frames15(t, 6*time.Second) {
		if i == 0 || f.Meta().PTS >= 3*time.Second {
			fd.Write(f)
		}
	}
	if err := fd.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "c", "*.mp4"))
	if len(segs) < 2 {
		t.Fatalf("segments %v", segs)
	}
	out, _ := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", segs[0]).Output()
	if n, _ := strconv.Atoi(strings.TrimSpace(string(out))); n < 2 {
		all, _ := exec.Command("ffprobe", "-v", "error", "-show_entries", "frame=pts_time", "-of", "csv=p=0", segs[0]).CombinedOutput()
		t.Errorf("first segment %s has %d picture(s): %q %s", filepath.Base(segs[0]), n, out, all)
	}
}
