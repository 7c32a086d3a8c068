package blur

import (
	"bytes"
	"context"
	"errors"
	"image"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/veilproject/veil/frame"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scriptedDetector answers from a function, to poison the stage on purpose.
type scriptedDetector struct {
	fn    func(ctx context.Context, img Image) ([]Detection, error)
	calls atomic.Int32
}

func (d *scriptedDetector) Detect(ctx context.Context, img Image) ([]Detection, error) {
	d.calls.Add(1)
	return d.fn(ctx, img)
}
func (d *scriptedDetector) Name() string { return "scripted" }

// face is where the test pattern puts a "face": a high-contrast checkerboard
// that any obscuring flattens.
var face = image.Rect(100, 60, 160, 140)

// testFrame is a smooth gradient scene with a checkerboard face at face.
func testFrame(seq uint64) *frame.Raw { return testFrameAt(seq, 1) }

// testFrameAt is testFrame scaled k times (the face at face*k).
func testFrameAt(seq uint64, k int) *frame.Raw {
	w, h := 320*k, 240*k
	at := image.Rect(face.Min.X*k, face.Min.Y*k, face.Max.X*k, face.Max.Y*k)
	r := frame.NewRaw(frame.Meta{Camera: "cam", Seq: seq, PTS: time.Duration(seq) * 100 * time.Millisecond}, w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := (y*w + x) * 3
			r.Pix[i], r.Pix[i+1], r.Pix[i+2] = byte(x*255/w), byte(y*255/h), 128
			if image.Pt(x, y).In(at) {
				v := byte(0)
				if (x/2+y/2)%2 == 0 {
					v = 255
				}
				r.Pix[i], r.Pix[i+1], r.Pix[i+2] = v, v, v
			}
		}
	}
	return r
}

// detail measures high-frequency energy in r: the mean absolute difference
// between horizontal neighbours. The checkerboard scores about 127; any
// obscuring leaves well under 5.
func detail(pix []byte, width int, r image.Rectangle) float64 {
	var sum float64
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X-1; x++ {
			i := (y*width + x) * 3
			sum += math.Abs(float64(pix[i]) - float64(pix[i+3]))
			n++
		}
	}
	return sum / float64(n)
}

func newStage(t *testing.T, cfg Config, det Detector) (*Stage, *prometheus.Registry) {
	t.Helper()
	return newParallelStage(t, cfg, det, 1)
}

// newParallelStage is a stage with n workers (Deps.Parallel).
func newParallelStage(t *testing.T, cfg Config, det Detector, n int) (*Stage, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Deps{Camera: "cam", Detector: det, Metrics: m, Parallel: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, reg
}

func findFace(_ context.Context, _ Image) ([]Detection, error) {
	return []Detection{{Box: face, Score: 0.9}}, nil
}

func TestObscureModesFlattenFaceKeepScene(t *testing.T) {
	for _, mode := range []Mode{ModeBlur, ModeMosaic, ModeFill} {
		t.Run(string(mode), func(t *testing.T) {
			s, _ := newStage(t, Config{Mode: mode}, &scriptedDetector{fn: findFace})
			orig := testFrame(0)
			want := append([]byte(nil), orig.Pix...)
			f, err := s.Obscure(context.Background(), orig)
			if err != nil {
				t.Fatal(err)
			}
			if orig.Pix != nil {
				t.Fatal("blur did not take ownership of the raw pixels")
			}
			if d := detail(want, 320, face); d < 100 {
				t.Fatalf("test pattern too weak: %v", d)
			}
			if d := detail(f.Pix(), 320, face); d > 5 {
				t.Errorf("face region still has detail %.1f after %s", d, mode)
			}
			// Outside the enlarged face box the scene must be untouched.
			grown := enlarge(face, 0.25)
			changed := 0
			for y := 0; y < 240; y++ {
				for x := 0; x < 320; x++ {
					if image.Pt(x, y).In(grown) {
						continue
					}
					i := (y*320 + x) * 3
					if f.Pix()[i] != want[i] || f.Pix()[i+1] != want[i+1] || f.Pix()[i+2] != want[i+2] {
						changed++
					}
				}
			}
			if changed != 0 {
				t.Errorf("%d pixels outside the face box changed", changed)
			}
			if f.Faces() != 1 || f.FailClosed() != "" {
				t.Errorf("faces=%d failClosed=%q", f.Faces(), f.FailClosed())
			}
		})
	}
}

func TestMosaicHasAtMostConfiguredCells(t *testing.T) {
	for cells := 1; cells <= MaxMosaicCells; cells++ {
		pix := testFrame(0).Pix
		o := obscurer{mode: ModeMosaic, mosaicCells: cells}
		o.region(pix, 320, 240, face)
		// Count distinct colour runs along the face's longer side (its height).
		x := face.Min.X + 1
		runs, prev := 0, -1
		for y := face.Min.Y; y < face.Max.Y; y++ {
			v := int(pix[(y*320+x)*3])
			if v != prev {
				runs++
				prev = v
			}
		}
		if runs > cells {
			t.Errorf("cells=%d: %d distinct runs across the face", cells, runs)
		}
	}
}

// TestPoisonedDetectorNeverPassesAFace is the fail-closed proof: whatever
// the detector does wrong, the face in the frame comes out without detail.
func TestPoisonedDetectorNeverPassesAFace(t *testing.T) {
	var block chan struct{} // remade per case, released before the stage closes
	cases := []struct {
		name   string
		fn     func(context.Context, Image) ([]Detection, error)
		reason string
	}{
		{"error", func(context.Context, Image) ([]Detection, error) { return nil, errors.New("boom") }, ReasonError},
		{"panic", func(context.Context, Image) ([]Detection, error) { panic("native crash") }, ReasonPanic},
		{"hangs", func(ctx context.Context, _ Image) ([]Detection, error) { <-block; return nil, nil }, ReasonDeadline},
		{"slow", func(ctx context.Context, _ Image) ([]Detection, error) {
			time.Sleep(200 * time.Millisecond)
			return []Detection{{Box: face, Score: 1}}, nil
		}, ReasonDeadline},
		{"inverted box", func(context.Context, Image) ([]Detection, error) {
			return []Detection{{Box: image.Rectangle{Min: image.Pt(50, 50), Max: image.Pt(10, 10)}, Score: 0.9}}, nil
		}, ReasonInvalid},
		{"box off frame", func(context.Context, Image) ([]Detection, error) {
			return []Detection{{Box: image.Rect(5000, 5000, 5100, 5100), Score: 0.9}}, nil
		}, ReasonInvalid},
		{"huge box", func(context.Context, Image) ([]Detection, error) {
			return []Detection{{Box: image.Rect(-1e6, -1e6, 1e6, 1e6), Score: 0.9}}, nil
		}, ReasonInvalid},
		{"NaN score", func(context.Context, Image) ([]Detection, error) {
			return []Detection{{Box: face, Score: float32(math.NaN())}}, nil
		}, ReasonInvalid},
		{"score above 1", func(context.Context, Image) ([]Detection, error) {
			return []Detection{{Box: face, Score: 7}}, nil
		}, ReasonInvalid},
		{"one good one bad", func(context.Context, Image) ([]Detection, error) {
			return []Detection{{Box: face, Score: 0.9}, {Box: image.Rect(10, 10, 10, 30), Score: 0.9}}, nil
		}, ReasonInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			block = make(chan struct{})
			release := block
			det := &scriptedDetector{fn: tc.fn}
			s, reg := newStage(t, Config{Deadline: 50 * time.Millisecond}, det)
			t.Cleanup(func() { close(release) }) // runs before the stage's Close
			s.markReady()                        // past warm-up, so the reason is the fault itself
			f, err := s.Obscure(context.Background(), testFrame(1))
			if err != nil {
				t.Fatal(err)
			}
			if f.FailClosed() != tc.reason {
				t.Errorf("fail-closed reason %q, want %q", f.FailClosed(), tc.reason)
			}
			if d := detail(f.Pix(), 320, face); d > 5 {
				t.Errorf("face detail %.1f passed through a %s detector", d, tc.name)
			}
			if d := detail(f.Pix(), 320, image.Rect(0, 0, 320, 240)); d > 5 {
				t.Errorf("frame not obscured whole: detail %.1f", d)
			}
			got := testutil.ToFloat64(s.m.failClosed[tc.reason])
			if got != 1 {
				t.Errorf("veil_blur_fail_closed_frames_total{reason=%q} = %v", tc.reason, got)
			}
			if n, err := testutil.GatherAndCount(reg, "veil_blur_fail_closed_frames_total"); err != nil || n != len(reasons) {
				t.Errorf("fail-closed series: %d, %v", n, err)
			}
		})
	}
}

// TestStuckWorkersFailClosedNotQueued: with two workers and a detector
// that never answers, the first two frames fail closed on their deadline
// (each on its own worker), the third finds no worker free and fails
// closed at once; nothing is queued behind the stuck calls.
func TestStuckWorkersFailClosedNotQueued(t *testing.T) {
	for _, search := range []string{SearchFull, SearchRegions} {
		t.Run(search, func(t *testing.T) {
			release := make(chan struct{})
			det := &scriptedDetector{fn: func(ctx context.Context, _ Image) ([]Detection, error) {
				<-release
				return nil, nil
			}}
			s, _ := newParallelStage(t, Config{Search: search, Deadline: 20 * time.Millisecond}, det, 2)
			t.Cleanup(func() { close(release) })
			s.markReady()
			var got []string
			for i := range uint64(3) {
				f, err := s.Obscure(context.Background(), testFrame(i))
				if err != nil {
					t.Fatal(err)
				}
				if d := detail(f.Pix(), 320, image.Rect(0, 0, 320, 240)); d > 5 {
					t.Errorf("frame %d not obscured whole: detail %.1f", i, d)
				}
				got = append(got, f.FailClosed())
			}
			if want := []string{ReasonDeadline, ReasonDeadline, ReasonBusy}; !slices.Equal(got, want) {
				t.Errorf("reasons %q, want %q", got, want)
			}
			if n := det.calls.Load(); n != 2 {
				t.Errorf("detector called %d times; a stuck worker must not be queued on", n)
			}
		})
	}
}

func TestBusyDetectorFailsClosedNotQueued(t *testing.T) {
	release := make(chan struct{})
	det := &scriptedDetector{fn: func(ctx context.Context, _ Image) ([]Detection, error) {
		<-release
		return nil, nil
	}}
	s, _ := newStage(t, Config{Deadline: 20 * time.Millisecond}, det)
	s.markReady()
	f1, _ := s.Obscure(context.Background(), testFrame(1))
	f2, _ := s.Obscure(context.Background(), testFrame(2))
	close(release)
	if f1.FailClosed() != ReasonDeadline || f2.FailClosed() != ReasonBusy {
		t.Errorf("reasons %q, %q; want deadline, busy", f1.FailClosed(), f2.FailClosed())
	}
	if n := det.calls.Load(); n != 1 {
		t.Errorf("detector called %d times; a busy detector must not be queued on", n)
	}
}

func TestWarmupObscuresWholeUntilFirstAnswer(t *testing.T) {
	var slow atomic.Bool
	slow.Store(true)
	det := &scriptedDetector{fn: func(ctx context.Context, img Image) ([]Detection, error) {
		if slow.Load() {
			time.Sleep(100 * time.Millisecond) // model initialisation
		}
		return findFace(ctx, img)
	}}
	s, reg := newStage(t, Config{Deadline: 30 * time.Millisecond}, det)
	if testutil.ToFloat64(s.m.ready) != 0 {
		t.Fatal("ready before any answer")
	}
	f, _ := s.Obscure(context.Background(), testFrame(0))
	if f.FailClosed() != ReasonWarmup {
		t.Fatalf("first frame: fail-closed %q, want warmup", f.FailClosed())
	}
	time.Sleep(150 * time.Millisecond) // let the first call finish
	slow.Store(false)
	f, _ = s.Obscure(context.Background(), testFrame(1))
	if f.FailClosed() != "" || !s.Ready() {
		t.Fatalf("after the detector answered: fail-closed %q ready %v", f.FailClosed(), s.Ready())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP veil_blur_detector_ready 1 once the detector has answered at least once; until then every frame is obscured whole.
# TYPE veil_blur_detector_ready gauge
veil_blur_detector_ready{camera="cam"} 1
`), "veil_blur_detector_ready"); err != nil {
		t.Error(err)
	}
}

func TestDropOnFailure(t *testing.T) {
	det := &scriptedDetector{fn: func(context.Context, Image) ([]Detection, error) { return nil, errors.New("x") }}
	s, _ := newStage(t, Config{OnFailure: "drop"}, det)
	raw := testFrame(0)
	pix := raw.Pix
	f, err := s.Obscure(context.Background(), raw)
	if !errors.Is(err, ErrDropped) || f != nil {
		t.Fatalf("got %v, %v; want ErrDropped", f, err)
	}
	for _, b := range pix {
		if b != 0 {
			t.Fatal("dropped frame's pixels were not wiped")
		}
	}
}

func TestHeldBoxCoversMissedFrames(t *testing.T) {
	var miss atomic.Bool
	det := &scriptedDetector{fn: func(ctx context.Context, img Image) ([]Detection, error) {
		if miss.Load() {
			return nil, nil
		}
		return findFace(ctx, img)
	}}
	s, _ := newStage(t, Config{Search: SearchFull, Hold: 350 * time.Millisecond}, det)
	if f, _ := s.Obscure(context.Background(), testFrame(0)); f.Faces() != 1 {
		t.Fatal("no face on the first frame")
	}
	miss.Store(true)
	for i := uint64(1); i <= 4; i++ {
		f, _ := s.Obscure(context.Background(), testFrame(i))
		d := detail(f.Pix(), 320, face)
		if i <= 3 && d > 5 {
			t.Errorf("frame %d (missed by the detector, within hold): face detail %.1f", i, d)
		}
		if i == 4 && d < 100 {
			t.Errorf("frame %d: box held past hold", i)
		}
	}
}

// TestHeldBoxFollowsASizeChange: the camera doubles its resolution just
// as the detector misses the face: the held box is scaled with the
// picture, so the face stays obscured at its new place and size.
func TestHeldBoxFollowsASizeChange(t *testing.T) {
	var miss atomic.Bool
	det := &scriptedDetector{fn: func(ctx context.Context, img Image) ([]Detection, error) {
		if miss.Load() {
			return nil, nil
		}
		return findFace(ctx, img)
	}}
	s, _ := newStage(t, Config{Search: SearchFull, Hold: time.Second}, det)
	if f, _ := s.Obscure(context.Background(), testFrameAt(0, 1)); f.Faces() != 1 {
		t.Fatal("no face on the first frame")
	}
	miss.Store(true)
	f, _ := s.Obscure(context.Background(), testFrameAt(1, 2))
	at := image.Rect(face.Min.X*2, face.Min.Y*2, face.Max.X*2, face.Max.Y*2)
	if f.Width() != 640 || f.Faces() != 1 {
		t.Fatalf("%dx%d, %d faces", f.Width(), f.Height(), f.Faces())
	}
	if d := detail(f.Pix(), 640, at); d > 5 {
		t.Errorf("face at the new size shows detail %.1f", d)
	}
}

// TestBadBufferIsDiscarded: a raw frame whose buffer does not match its
// size is refused with an error, its pixels dropped, and counted: nothing
// comes out to be written.
func TestBadBufferIsDiscarded(t *testing.T) {
	s, _ := newStage(t, Config{}, &scriptedDetector{fn: findFace})
	raw := &frame.Raw{Width: 10, Height: 10, Pix: make([]byte, 5)}
	f, err := s.Obscure(context.Background(), raw)
	if err == nil || f != nil || raw.Pix != nil {
		t.Errorf("bad buffer: frame %v, err %v, pixels kept %v", f, err, raw.Pix != nil)
	}
	if v := testutil.ToFloat64(s.m.frames.invalid); v != 1 {
		t.Errorf("invalid frames counted: %v", v)
	}
}

func TestZeroFrameIsNotValid(t *testing.T) {
	var f Frame
	if f.Valid() || (*Frame)(nil).Valid() {
		t.Error("a zero Frame must not count as obscured")
	}
}

func TestConfigValidateNamesKey(t *testing.T) {
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Mode = "gauss" }, "blur.mode"},
		{func(c *Config) { c.Margin = -1 }, "blur.margin"},
		{func(c *Config) { c.MosaicCells = 12 }, "blur.mosaic_cells"},
		{func(c *Config) { c.BlurKernel = 0.2 }, "blur.blur_kernel"},
		{func(c *Config) { c.Hold = time.Second }, "blur.hold"},
		{func(c *Config) { c.SweepInterval = 2 * time.Second }, "blur.sweep_interval"},
		{func(c *Config) { c.Search = "tiles" }, "blur.search"},
		{func(c *Config) { c.HoldGrow = -1 }, "blur.hold_grow"},
		{func(c *Config) { c.Deadline = -time.Second }, "blur.deadline"},
		{func(c *Config) { c.OnFailure = "pass" }, "blur.on_failure"},
	}
	for _, tc := range cases {
		var c Config
		c.Defaults()
		if err := c.Validate("blur"); err != nil {
			t.Fatalf("defaults invalid: %v", err)
		}
		tc.mut(&c)
		err := c.Validate("blur")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
			t.Errorf("got %v, want an error naming %s", err, tc.want)
		}
	}
}

func TestObscureAfterCloseFailsClosed(t *testing.T) {
	s, _ := newStage(t, Config{}, &scriptedDetector{fn: findFace})
	s.markReady()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := s.Obscure(context.Background(), testFrame(0))
	if err != nil || f.FailClosed() == "" {
		t.Fatalf("after Close: %v, fail-closed %q", err, f.FailClosed())
	}
	if err := s.WarmUp(context.Background(), 8, 8); err == nil {
		t.Error("WarmUp after Close succeeded")
	}
}

// TestWholeFrameFallbackHoldsAnyFaceToEightCells: a fail-closed frame is
// obscured so that a face filling the whole frame is at most 8 cells
// across, and the cell edges are blurred (no step between neighbouring
// pixels is sharp): the 16-cell mosaic it replaces left close-up faces at
// 9-16 sharp cells.
func TestWholeFrameFallbackHoldsAnyFaceToEightCells(t *testing.T) {
	for _, sz := range []image.Point{{320, 240}, {1280, 720}, {480, 640}} {
		if c := wholeCell(sz.X, sz.Y); (max(sz.X, sz.Y)+c-1)/c > MaxMosaicCells {
			t.Errorf("%v: cells of %d px leave %d across", sz, c, (max(sz.X, sz.Y)+c-1)/c)
		}
		// A close-up "face" with detail 12 blocks across: finer than the
		// fallback may keep, coarser than a 16-cell mosaic removes.
		pix := make([]byte, sz.X*sz.Y*3)
		b := max(sz.X, sz.Y) / 12
		for y := 0; y < sz.Y; y++ {
			for x := 0; x < sz.X; x++ {
				if (x/b+y/b)%2 == 0 {
					i := (y*sz.X + x) * 3
					pix[i], pix[i+1], pix[i+2] = 255, 255, 255
				}
			}
		}
		var o obscurer
		o.whole(pix, sz.X, sz.Y)
		worst := 0
		for y := 0; y < sz.Y; y++ {
			for x := 0; x+1 < sz.X; x++ {
				i := (y*sz.X + x) * 3
				worst = max(worst, int(math.Abs(float64(pix[i])-float64(pix[i+3]))))
			}
		}
		if worst > 8 {
			t.Errorf("%v: neighbouring pixels differ by up to %d after the fallback: cell edges are sharp", sz, worst)
		}
	}
}

// TestFailClosedFramesDoNotAgeHeldBoxes: frames that failed closed (the
// detector erred on them) are obscured whole and must not use up a held
// face's time: the first frame the detector answers again without seeing
// the face, within the hold, still has it obscured. (Held boxes used to
// age per frame, so six busy frames cleared them.)
func TestFailClosedFramesDoNotAgeHeldBoxes(t *testing.T) {
	var mode atomic.Int32 // 0 finds the face, 1 errs, 2 misses it
	det := &scriptedDetector{fn: func(ctx context.Context, img Image) ([]Detection, error) {
		switch mode.Load() {
		case 1:
			return nil, errors.New("busy elsewhere")
		case 2:
			return nil, nil
		}
		return findFace(ctx, img)
	}}
	s, _ := newStage(t, Config{Search: SearchFull, Hold: time.Second}, det)
	if f, _ := s.Obscure(context.Background(), testFrame(0)); f.Faces() != 1 {
		t.Fatal("no face on the first frame")
	}
	mode.Store(1)
	for i := uint64(1); i <= 6; i++ {
		if f, _ := s.Obscure(context.Background(), testFrame(i)); f.FailClosed() == "" {
			t.Fatalf("frame %d was not failed closed", i)
		}
	}
	mode.Store(2)
	f, _ := s.Obscure(context.Background(), testFrame(7)) // 0.7 s after the face was seen
	if d := detail(f.Pix(), 320, face); d > 5 {
		t.Errorf("after six failed-closed frames the held face shows (detail %.1f)", d)
	}
}

// refBlurLine is the box filter written plainly: for each pixel, the mean
// (rounded down) of the window clamped to the line.
func refBlurLine(p []byte, stride, n, radius int) {
	orig := make([]int, 3*n)
	for i := 0; i < n; i++ {
		for c := 0; c < 3; c++ {
			orig[i*3+c] = int(p[i*stride+c])
		}
	}
	for i := 0; i < n; i++ {
		for c := 0; c < 3; c++ {
			s := 0
			for j := i - radius; j <= i+radius; j++ {
				s += orig[min(max(j, 0), n-1)*3+c]
			}
			p[i*stride+c] = byte(s / (2*radius + 1))
		}
	}
}

// TestDividerIsExact: the multiply-shift division equals integer division
// for every window size up to 4095 and every sum it can meet.
func TestDividerIsExact(t *testing.T) {
	for n := 1; n <= 4095; n++ {
		d := newDivider(n)
		for s := 0; s <= 255*n; s += 1 + s/997 {
			if got := d.div(int32(s)); got != byte(s/n) {
				t.Fatalf("%d/%d: %d, want %d", s, n, got, byte(s/n))
			}
		}
	}
}

// TestColumnBlurMatchesLineBlur: the row-by-row vertical pass gives the
// very bytes the per-column pass gave, on random pictures and regions
// (edges, tiny regions, kernels wider than the region).
func TestColumnBlurMatchesLineBlur(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for n := 0; n < 200; n++ {
		w, h := 1+rng.IntN(90), 1+rng.IntN(70)
		pix := make([]byte, w*h*3)
		for i := range pix {
			pix[i] = byte(rng.Uint32())
		}
		x0, y0 := rng.IntN(w), rng.IntN(h)
		r := image.Rect(x0, y0, x0+1+rng.IntN(w-x0), y0+1+rng.IntN(h-y0))
		radius := rng.IntN(40)
		want := append([]byte(nil), pix...)
		for x := r.Min.X; x < r.Max.X; x++ {
			refBlurLine(want[(r.Min.Y*w+x)*3:], w*3, r.Dy(), radius)
		}
		var o obscurer
		o.blurColumns(pix, w, r, radius)
		if !bytes.Equal(pix, want) {
			t.Fatalf("%dx%d region %v radius %d: the row-by-row pass differs", w, h, r, radius)
		}
		// And a row, by blurLine with its multiply-shift division.
		row, ref := append([]byte(nil), pix[:w*3]...), append([]byte(nil), pix[:w*3]...)
		blurLine(row, 3, w, radius, make([]int32, 3*w))
		refBlurLine(ref, 3, w, radius)
		if !bytes.Equal(row, ref) {
			t.Fatalf("width %d radius %d: blurLine differs from the plain division", w, radius)
		}
		for _, b := range o.rows {
			if b != 0 {
				t.Fatal("the region's copy was not wiped")
			}
		}
	}
}

// TestDoneGivesTheBufferBackAfterTheLastHolder: a frame shared with two
// holders keeps its pixels until both are done; one never shared keeps
// them whatever Done is called.
func TestDoneGivesTheBufferBackAfterTheLastHolder(t *testing.T) {
	s, _ := newStage(t, Config{}, &scriptedDetector{fn: func(context.Context, Image) ([]Detection, error) { return nil, nil }})
	f, err := s.Obscure(context.Background(), testFrame(1))
	if err != nil {
		t.Fatal(err)
	}
	f.Share(2)
	f.Done()
	if !f.Valid() {
		t.Fatal("pixels gone after the first of two holders")
	}
	f.Done()
	if f.Valid() || f.Pix() != nil {
		t.Error("pixels still held after the last holder")
	}
	g, _ := s.Obscure(context.Background(), testFrame(2))
	g.Done()
	if !g.Valid() {
		t.Error("a frame never shared lost its pixels")
	}
}

// TestWholeFrameSearchReadsTheFrameUntouched: a whole-frame search reads
// the frame's own pixels, not a copy. When it answers in time the frame
// is obscured in that same buffer; when it misses the deadline the frame
// is obscured whole in another buffer, and the one the detector is still
// reading is not written under it.
func TestWholeFrameSearchReadsTheFrameUntouched(t *testing.T) {
	sum := func(p []byte) (s uint64) {
		for i, b := range p {
			s += uint64(b) * uint64(i%251+1)
		}
		return s
	}
	for _, search := range []string{SearchFull, SearchRegions} {
		t.Run(search, func(t *testing.T) {
			release := make(chan struct{})
			var slow atomic.Bool
			changed := make(chan bool, 1)
			det := &scriptedDetector{fn: func(ctx context.Context, img Image) ([]Detection, error) {
				if !slow.Load() {
					return nil, nil
				}
				before := sum(img.Pix)
				<-release
				changed <- sum(img.Pix) != before
				return nil, nil
			}}
			s, _ := newStage(t, Config{Search: search, Deadline: 50 * time.Millisecond}, det)
			s.markReady()

			raw := testFrame(1)
			lent := &raw.Pix[0]
			f, err := s.Obscure(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			if f.FailClosed() != "" || &f.Pix()[0] != lent {
				t.Errorf("answered in time: fail-closed %q, same buffer %v; want it obscured where it was", f.FailClosed(), &f.Pix()[0] == lent)
			}

			slow.Store(true)
			raw = testFrame(2)
			raw.PTS += 2 * time.Second // a sweep is due in region search
			lent = &raw.Pix[0]
			f, err = s.Obscure(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			if f.FailClosed() != ReasonDeadline || &f.Pix()[0] == lent {
				t.Errorf("past the deadline: fail-closed %q, same buffer %v; want deadline, in another buffer", f.FailClosed(), &f.Pix()[0] == lent)
			}
			if d := detail(f.Pix(), 320, image.Rect(0, 0, 320, 240)); d > 5 {
				t.Errorf("not obscured whole: detail %.1f", d)
			}
			close(release)
			if <-changed {
				t.Error("the frame's pixels changed while the detector was reading them")
			}
		})
	}
}
