package blur

import (
	"context"
	"errors"
	"fmt"
	"image"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/veilproject/veil/frame"
)

// patternFinder is a detector that really looks: it boxes the checkerboard
// "face" wherever it is in the image it is given (a whole frame or a
// crop), and records the sizes it was asked about.
type patternFinder struct {
	mu    sync.Mutex
	sizes []image.Point
}

func (p *patternFinder) Name() string { return "pattern" }
func (p *patternFinder) Detect(_ context.Context, img Image) ([]Detection, error) {
	p.mu.Lock()
	p.sizes = append(p.sizes, image.Pt(img.Width, img.Height))
	p.mu.Unlock()
	w, h := img.Width, img.Height
	on := make([]bool, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x+1 < w; x++ {
			i := (y*w + x) * 3
			a, b := img.Pix[i], img.Pix[i+3]
			on[y*w+x] = (a == 0 && b == 255 || a == 255 && b == 0) && img.Pix[i+1] == a && img.Pix[i+2] == a
		}
	}
	// Checker pixels within 3 px of each other make one face.
	seen := make([]bool, w*h)
	var dets []Detection
	for start := range on {
		if !on[start] || seen[start] {
			continue
		}
		seen[start] = true
		r := image.Rect(start%w, start/w, start%w+1, start/w+1)
		for queue := []int{start}; len(queue) > 0; {
			i := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			x, y := i%w, i/w
			r = r.Union(image.Rect(x, y, x+2, y+1))
			for dy := -3; dy <= 3; dy++ {
				for dx := -3; dx <= 3; dx++ {
					nx, ny := x+dx, y+dy
					if nx >= 0 && ny >= 0 && nx < w && ny < h && on[ny*w+nx] && !seen[ny*w+nx] {
						seen[ny*w+nx] = true
						queue = append(queue, ny*w+nx)
					}
				}
			}
		}
		if r.Dx() >= 8 && r.Dy() >= 8 {
			dets = append(dets, Detection{Box: r, Score: 0.9})
		}
	}
	return dets, nil
}

func (p *patternFinder) fullSearches(w, h int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.sizes {
		if s == image.Pt(w, h) {
			n++
		}
	}
	return n
}

// scene is a 640x480 gradient at stream time t with a 40x48 checkerboard
// face at at (none if at is nil), and the lights at brightness light.
func scene(seq uint64, at *image.Point, light int) *frame.Raw {
	const w, h = 640, 480
	r := frame.NewRaw(frame.Meta{Camera: "cam", Seq: seq, PTS: time.Duration(seq) * 100 * time.Millisecond}, w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := (y*w + x) * 3
			r.Pix[i], r.Pix[i+1], r.Pix[i+2] = byte(min(255, x*200/w+light)), byte(min(255, y*200/h+light)), byte(min(255, 60+light))
		}
	}
	if at != nil {
		f := image.Rect(at.X, at.Y, at.X+40, at.Y+48)
		for y := f.Min.Y; y < f.Max.Y; y++ {
			for x := f.Min.X; x < f.Max.X; x++ {
				v := byte(0)
				if (x/2+y/2)%2 == 0 {
					v = 255
				}
				i := (y*w + x) * 3
				r.Pix[i], r.Pix[i+1], r.Pix[i+2] = v, v, v
			}
		}
	}
	return r
}

func faceDetail(f *Frame, at image.Point) float64 {
	return detail(f.Pix(), 640, image.Rect(at.X, at.Y, at.X+40, at.Y+48))
}

// TestRegionsObscureEveryFrame: over 5 s at 10 fps, a face that sits
// still from the start and a face that walks in are never shown, while
// the detector sees the whole frame only at start-up and once a second.
func TestRegionsObscureEveryFrame(t *testing.T) {
	for _, workers := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d-workers", workers), func(t *testing.T) { testRegionsObscureEveryFrame(t, workers) })
	}
}

func testRegionsObscureEveryFrame(t *testing.T, workers int) {
	det := &patternFinder{}
	s, reg := newParallelStage(t, Config{Mode: ModeFill}, det, workers)
	still := image.Pt(500, 60)
	for i := uint64(0); i < 50; i++ {
		var walker *image.Point
		if i >= 12 {
			walker = &image.Point{X: 40 + int(i-12)*12, Y: 300} // 120 px/s, entering at 1.2 s
		}
		raw := scene(i, walker, 0)
		// Both faces on one frame.
		for y := still.Y; y < still.Y+48; y++ {
			for x := still.X; x < still.X+40; x++ {
				v := byte(0)
				if (x/2+y/2)%2 == 0 {
					v = 255
				}
				j := (y*640 + x) * 3
				raw.Pix[j], raw.Pix[j+1], raw.Pix[j+2] = v, v, v
			}
		}
		f, err := s.Obscure(context.Background(), raw)
		if err != nil || f.FailClosed() != "" {
			t.Fatalf("frame %d: %v %q", i, err, f.FailClosed())
		}
		if d := faceDetail(f, still); d > 5 {
			t.Errorf("frame %d: the still face shows (detail %.1f)", i, d)
		}
		if walker != nil {
			if d := faceDetail(f, *walker); d > 5 {
				t.Errorf("frame %d: the walking face shows (detail %.1f)", i, d)
			}
		}
	}
	full := det.fullSearches(640, 480)
	if full < 5 || full > 7 {
		t.Errorf("%d full-frame searches in 5 s, want start-up and one a second", full)
	}
	regions := testutil.ToFloat64(s.m.searches.regions)
	t.Logf("%d full searches, %.0f region searches, crops %v", full, regions, det.sizes[len(det.sizes)-3:])
	if regions < 40 {
		t.Errorf("only %.0f frames searched by regions", regions)
	}
	_ = reg
}

// TestSceneChangeSearchesTheWholeFrame: lights switched on change most of
// the picture: the next frame is searched whole at once, not at the next
// sweep.
func TestSceneChangeSearchesTheWholeFrame(t *testing.T) {
	det := &patternFinder{}
	s, _ := newStage(t, Config{Mode: ModeFill}, det)
	at := image.Pt(300, 200)
	for i := uint64(0); i < 3; i++ {
		s.Obscure(context.Background(), scene(i, nil, 0))
	}
	before := det.fullSearches(640, 480)
	f, _ := s.Obscure(context.Background(), scene(3, &at, 90)) // lights up, and a face
	if det.fullSearches(640, 480) != before+1 {
		t.Error("a scene change was not searched whole")
	}
	if d := faceDetail(f, at); d > 5 {
		t.Errorf("face after the scene change shows (detail %.1f)", d)
	}
}

// TestBrokenMotionFinderSearchesWhole: a motion finder that errs or
// panics must not leave a frame unsearched: the frame is searched whole.
func TestBrokenMotionFinderSearchesWhole(t *testing.T) {
	for _, name := range []string{"error", "panic"} {
		t.Run(name, func(t *testing.T) {
			det := &patternFinder{}
			s, _ := newStage(t, Config{Mode: ModeFill}, det)
			s.Obscure(context.Background(), scene(0, nil, 0)) // the start-up sweep
			s.motionHook = func(Image) ([]image.Rectangle, bool, error) {
				if name == "panic" {
					panic("motion broke")
				}
				return nil, false, errors.New("motion broke")
			}
			at := image.Pt(100, 100)
			f, err := s.Obscure(context.Background(), scene(1, &at, 0))
			if err != nil || f.FailClosed() != "" {
				t.Fatal(err, f.FailClosed())
			}
			if d := faceDetail(f, at); d > 5 || det.fullSearches(640, 480) != 2 {
				t.Errorf("face detail %.1f, full searches %d", d, det.fullSearches(640, 480))
			}
		})
	}
}

func TestMotionFinder(t *testing.T) {
	var m motion
	if _, scene0 := m.update(scene(0, nil, 0).Pix, 640, 480); !scene0 {
		t.Error("the first frame is not a scene change")
	}
	m.searchedAll()
	if boxes, sc := m.update(scene(1, nil, 0).Pix, 640, 480); len(boxes) != 0 || sc {
		t.Errorf("a still picture moved: %v %v", boxes, sc)
	}
	at := image.Pt(200, 150)
	boxes, sc := m.update(scene(2, &at, 0).Pix, 640, 480)
	if sc || len(boxes) != 1 || !image.Rect(200, 150, 240, 198).In(boxes[0].Inset(-8)) {
		t.Errorf("a face appearing at %v: boxes %v, scene %v", at, boxes, sc)
	}
	if _, sc := m.update(scene(3, nil, 120).Pix, 640, 480); !sc {
		t.Error("lights switched on is not a scene change")
	}
}

// TestMotionKeepsChangeUntilSearched: the motion finder compares a frame
// with what the searches saw, not with the frame before: a face that
// appeared stays reported, frame after frame and whatever was dropped,
// until a search covers it; a search that covers only part of it leaves
// the rest reported; a slow drift, a few grey levels a frame, adds up
// until it is reported.
func TestMotionKeepsChangeUntilSearched(t *testing.T) {
	at := image.Pt(200, 150)
	face := image.Rect(200, 150, 240, 198)
	var m motion
	m.update(scene(0, nil, 0).Pix, 640, 480)
	if _, sc := m.update(scene(1, nil, 0).Pix, 640, 480); !sc {
		t.Fatal("before any search the whole frame is unsearched: want a scene change")
	}
	m.searchedAll()
	for i := range 3 { // no search covers it: it stays reported
		if boxes, _ := m.update(scene(2, &at, 0).Pix, 640, 480); len(boxes) != 1 || !face.In(boxes[0].Inset(-8)) {
			t.Fatalf("frame %d: the face that appeared at %v was not reported: %v", i, at, boxes)
		}
	}
	m.searched([]image.Rectangle{image.Rect(0, 0, 220, 480)}) // its left half
	if boxes, _ := m.update(scene(2, &at, 0).Pix, 640, 480); len(boxes) != 1 || boxes[0].Min.X < 216 || boxes[0].Max.X < 240 {
		t.Errorf("a crop covering the face's left half: the right half should stay reported, got %v", boxes)
	}
	m.searched([]image.Rectangle{image.Rect(160, 96, 320, 256)})
	if boxes, sc := m.update(scene(2, &at, 0).Pix, 640, 480); len(boxes) != 0 || sc {
		t.Errorf("searched and unchanged since: reported %v %v", boxes, sc)
	}
	// Lights rising by 3 grey levels a frame: the running average this
	// replaced followed such a drift and never reported it.
	reported := -1
	for i := 1; i <= 12 && reported < 0; i++ {
		if boxes, sc := m.update(scene(2, &at, 3*i).Pix, 640, 480); len(boxes) > 0 || sc {
			reported = i
		}
	}
	if reported < 0 || reported > 7 {
		t.Errorf("a drift of 3 grey levels a frame was reported after %d frames, want by 7 (18 levels)", reported)
	}
}

// TestJoinCheaper: regions are joined only where one box's crops cost no
// more than theirs apart, and nothing is lost.
func TestJoinCheaper(t *testing.T) {
	frame := image.Rect(0, 0, 1280, 720)
	for _, tc := range []struct {
		name string
		in   []image.Rectangle
		want int
	}{
		// A figure's head and feet: two 160-px squares (51k px and two
		// calls) or one 224 (50k px, one call).
		{"one figure", []image.Rectangle{image.Rect(500, 100, 560, 150), image.Rect(500, 260, 560, 310)}, 1},
		{"far apart", []image.Rectangle{image.Rect(0, 0, 60, 60), image.Rect(1000, 600, 1060, 660)}, 2},
		{"outside the frame", []image.Rectangle{image.Rect(-50, -50, -10, -10), image.Rect(10, 10, 50, 50)}, 1},
		{"too many to try", grid(maxJoined + 1), maxJoined + 1},
	} {
		out := joinCheaper(slices.Clone(tc.in), frame)
		if len(out) != tc.want {
			t.Errorf("%s: %v joined into %v, want %d regions", tc.name, tc.in, out, tc.want)
		}
		for _, r := range tc.in {
			r = r.Intersect(frame)
			if r.Empty() {
				continue
			}
			if !slices.ContainsFunc(out, func(o image.Rectangle) bool { return r.In(o) }) {
				t.Errorf("%s: %v is in no region of %v", tc.name, r, out)
			}
		}
	}
}

// grid is n small regions 40 px apart, any two of which would join.
func grid(n int) []image.Rectangle {
	var rs []image.Rectangle
	for i := range n {
		x, y := 40*(i%16), 40*(i/16)
		rs = append(rs, image.Rect(x, y, x+10, y+10))
	}
	return rs
}

// TestCoverUsesTheCheapestSquares: a region is covered by the square size
// whose crops add up to the least area, and every crop lies in the frame.
func TestCoverUsesTheCheapestSquares(t *testing.T) {
	frame := image.Rect(0, 0, 1280, 720)
	for _, tc := range []struct {
		r       image.Rectangle
		side, n int
	}{
		{image.Rect(100, 100, 250, 250), 160, 1}, // fits the smallest square
		{image.Rect(100, 100, 400, 400), 320, 1}, // one square beats tiles
		{image.Rect(0, 200, 700, 500), 320, 3},   // long: three 320s (307k px), not two 640s (819k px)
		{image.Rect(0, 0, 1280, 720), 448, 8},    // whole frame in tiles (the plan then searches it whole)
	} {
		cs := cover(tc.r, frame)
		if len(cs) != tc.n || cs[0].Dx() != tc.side || cs[0].Dy() != tc.side {
			t.Errorf("%v: %d crops of %v, want %d of %d", tc.r, len(cs), cs[0].Size(), tc.n, tc.side)
		}
		for _, c := range cs {
			if !c.In(frame) {
				t.Errorf("%v: crop %v outside the frame", tc.r, c)
			}
		}
	}
	if cs := cover(image.Rect(0, 0, 100, 100), image.Rect(0, 0, 120, 120)); len(cs) != 1 || !cs[0].Empty() {
		t.Errorf("frame smaller than every square: %v", cs)
	}
}

// TestHolderKeepsOneBoxPerFace: two held boxes of one face (a detection
// matched one; the other is the same face seen slightly apart) do not
// both live on, and a jittery match does not give a held face a speed
// that would sweep its box across the frame.
func TestHolderKeepsOneBoxPerFace(t *testing.T) {
	h := holder{hold: 1500 * time.Millisecond, grow: 0.5}
	f := image.Rect(100, 100, 130, 130)
	// Two boxes of one face that the detector's suppression let through.
	h.update([]image.Rectangle{f, f.Add(image.Pt(8, 0))}, 0)
	if len(h.boxes) != 2 {
		t.Fatalf("%d held", len(h.boxes))
	}
	// Next frame the face is seen once: the other box is this face too.
	out := h.update([]image.Rectangle{f.Add(image.Pt(3, 0))}, time.Second/15)
	if len(out) != 1 || len(h.boxes) != 1 {
		t.Errorf("regions %v, held %d: the duplicate lived on", out, len(h.boxes))
	}

	// A match 29 px away one frame later reads as 435 px/s; held unseen
	// for a second, the box moves at most maxSpeed face widths.
	h = holder{hold: 1500 * time.Millisecond, grow: 0.5}
	h.update([]image.Rectangle{f}, 0)
	h.update([]image.Rectangle{f.Add(image.Pt(29, 0))}, time.Second/15)
	out = h.update(nil, time.Second/15+time.Second)
	if len(out) != 1 {
		t.Fatalf("regions %v", out)
	}
	if cx, _ := centre(out[0]); cx-115 > 29+maxSpeed*30+1 {
		t.Errorf("held box's centre moved %.0f px in 1 s, want at most %d", cx-115, 29+maxSpeed*30)
	}
}

// TestCamerasSweepApart: cameras started together do not sweep in the
// same frames (a whole-frame search each at once, on a shared engine),
// and no camera's sweeps are ever further apart than the interval.
func TestCamerasSweepApart(t *testing.T) {
	const frames = 60 // 6 s at 10 fps
	phases := map[uint64]bool{}
	cams := []string{"cam1", "cam2", "cam3", "cam4"}
	for i, cam := range cams {
		det := &patternFinder{}
		m, _ := NewMetrics(prometheus.NewRegistry())
		s, err := New(Config{Mode: ModeFill}, Deps{Camera: cam, Detector: det, Metrics: m, SweepPhase: float64(i) / float64(len(cams))})
		if err != nil {
			t.Fatal(err)
		}
		var sweeps []uint64
		for i := uint64(0); i < frames; i++ {
			before := det.fullSearches(640, 480)
			if _, err := s.Obscure(context.Background(), scene(i, nil, 0)); err != nil {
				t.Fatal(err)
			}
			if det.fullSearches(640, 480) > before {
				sweeps = append(sweeps, i)
			}
		}
		s.Close(context.Background())
		if len(sweeps) < frames/10 {
			t.Fatalf("%s: %d sweeps in %d frames at 10 fps: %v", cam, len(sweeps), frames, sweeps)
		}
		for k := 1; k < len(sweeps); k++ {
			if gap := sweeps[k] - sweeps[k-1]; gap > 10 {
				t.Errorf("%s: sweeps at frames %d and %d, more than the 1 s interval apart", cam, sweeps[k-1], sweeps[k])
			}
		}
		phases[sweeps[len(sweeps)-1]%10] = true
		t.Logf("%s sweeps at frames %v", cam, sweeps)
	}
	if len(phases) < len(cams) {
		t.Errorf("four cameras sweep in only %d of the 10 frames of a second", len(phases))
	}
}

// gatedFinder is a patternFinder that holds every call on an image of
// size gate until n such calls are in progress at once (or a second has
// passed), and records the most that ever were.
type gatedFinder struct {
	patternFinder
	gate image.Point
	n    int32
	in   atomic.Int32
	peak atomic.Int32
	all  chan struct{} // closed when n calls have met
	once sync.Once
}

func (g *gatedFinder) Detect(ctx context.Context, img Image) ([]Detection, error) {
	if image.Pt(img.Width, img.Height) == g.gate {
		n := g.in.Add(1)
		defer g.in.Add(-1)
		for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
		}
		if n >= g.n {
			g.once.Do(func() { close(g.all) })
		}
		select {
		case <-g.all:
		case <-time.After(time.Second):
		}
	}
	return g.patternFinder.Detect(ctx, img)
}

// paint puts the test's checkerboard face at each of at on raw.
func paint(raw *frame.Raw, at ...image.Point) {
	for _, p := range at {
		for y := p.Y; y < p.Y+48; y++ {
			for x := p.X; x < p.X+40; x++ {
				v := byte(0)
				if (x/2+y/2)%2 == 0 {
					v = 255
				}
				j := (y*raw.Width + x) * 3
				raw.Pix[j], raw.Pix[j+1], raw.Pix[j+2] = v, v, v
			}
		}
	}
}

// TestCropsAreSearchedSideBySide: three faces that appear apart on one
// frame give three crops, which a stage with three workers has searched
// at once; each face is found in its crop, put back at its place in the
// frame and obscured.
func TestCropsAreSearchedSideBySide(t *testing.T) {
	det := &gatedFinder{gate: image.Pt(160, 160), n: 3, all: make(chan struct{})}
	s, _ := newParallelStage(t, Config{Mode: ModeFill, Deadline: 5 * time.Second}, det, 3)
	s.Obscure(context.Background(), scene(0, nil, 0)) // the start-up sweep
	at := []image.Point{{40, 40}, {400, 60}, {220, 200}}
	raw := scene(1, nil, 0)
	paint(raw, at...)
	f, err := s.Obscure(context.Background(), raw)
	if err != nil || f.FailClosed() != "" {
		t.Fatal(err, f.FailClosed())
	}
	if p := det.peak.Load(); p != 3 {
		t.Errorf("at most %d crops searched at once, want 3", p)
	}
	if f.Detected() != 3 {
		t.Errorf("%d faces found, want 3", f.Detected())
	}
	for _, p := range at {
		if d := faceDetail(f, p); d > 5 {
			t.Errorf("face at %v shows (detail %.1f)", p, d)
		}
	}
	if n := det.fullSearches(640, 480); n != 1 {
		t.Errorf("%d whole-frame searches, want the start-up one", n)
	}
}

// TestOnePoisonedCropFailsTheFrame: when one crop of several searched
// side by side gets no good answer, the whole frame fails closed, whatever
// the other crops found.
func TestOnePoisonedCropFailsTheFrame(t *testing.T) {
	cases := []struct {
		name   string
		answer func() ([]Detection, error)
		reason string
	}{
		{"error", func() ([]Detection, error) { return nil, errors.New("boom") }, ReasonError},
		{"hangs", func() ([]Detection, error) { time.Sleep(300 * time.Millisecond); return nil, nil }, ReasonDeadline},
		{"inverted box", func() ([]Detection, error) {
			return []Detection{{Box: image.Rectangle{Min: image.Pt(50, 50), Max: image.Pt(10, 10)}, Score: 0.9}}, nil
		}, ReasonInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			finder := &patternFinder{}
			var crops atomic.Int32
			det := &scriptedDetector{fn: func(ctx context.Context, img Image) ([]Detection, error) {
				if img.Width < 640 && crops.Add(1) == 2 {
					return tc.answer()
				}
				return finder.Detect(ctx, img)
			}}
			s, _ := newParallelStage(t, Config{Mode: ModeFill, Deadline: 100 * time.Millisecond}, det, 3)
			s.Obscure(context.Background(), scene(0, nil, 0))
			at := []image.Point{{40, 40}, {400, 60}, {220, 200}}
			raw := scene(1, nil, 0)
			paint(raw, at...)
			f, err := s.Obscure(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			if f.FailClosed() != tc.reason {
				t.Errorf("reason %q, want %q", f.FailClosed(), tc.reason)
			}
			if d := detail(f.Pix(), 640, image.Rect(0, 0, 640, 480)); d > 5 {
				t.Errorf("frame not obscured whole: detail %.1f", d)
			}
		})
	}
}

// TestFullSearchDetectsAhead: in full search a stage with two workers
// detects two begun frames at once, and Finish gives them back in the
// order begun, each with its own face obscured.
func TestFullSearchDetectsAhead(t *testing.T) {
	det := &gatedFinder{gate: image.Pt(640, 480), n: 2, all: make(chan struct{})}
	s, _ := newParallelStage(t, Config{Mode: ModeFill, Search: SearchFull, Deadline: 5 * time.Second}, det, 2)
	if s.Ahead() != 2 {
		t.Fatalf("Ahead %d, want 2", s.Ahead())
	}
	at := []image.Point{{100, 100}, {400, 300}}
	p0 := s.Begin(context.Background(), scene(0, &at[0], 0))
	p1 := s.Begin(context.Background(), scene(1, &at[1], 0))
	for i, p := range []*Pending{p0, p1} {
		f, err := s.Finish(p)
		if err != nil || f.FailClosed() != "" {
			t.Fatal(err, f.FailClosed())
		}
		if f.Meta().Seq != uint64(i) || f.Detected() != 1 {
			t.Errorf("frame %d: seq %d, %d faces", i, f.Meta().Seq, f.Detected())
		}
		if d := faceDetail(f, at[i]); d > 5 {
			t.Errorf("frame %d: face shows (detail %.1f)", i, d)
		}
	}
	if p := det.peak.Load(); p != 2 {
		t.Errorf("at most %d frames detected at once, want 2", p)
	}
	if regions, _ := newParallelStage(t, Config{}, det, 2); regions.Ahead() != 1 {
		t.Errorf("region search: Ahead %d, want 1 (a frame's crops depend on the frame before)", regions.Ahead())
	}
}
