package counter

import (
	"context"
	"fmt"
	"image"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/queue"
)

// The detector method's tracker and line logic, on scripted boxes: one
// call per detection interval.

// runBoxes feeds one set of scored boxes per interval (boxes[i] for
// interval i) through the tracker and the line and zone logic.
func runBoxes(t *testing.T, cfg Config, boxes [][]blur.Detection) (*Counter, []int) {
	t.Helper()
	cfg.Method = MethodDetector
	c, err := New(cfg, Deps{Camera: "t", Metrics: newTestMetrics(t), People: noPeople{}})
	if err != nil {
		t.Fatal(err)
	}
	c.started = true
	c.size(W, H)
	var occ []int
	for _, b := range boxes {
		tracks := c.bt.update(b, 1)
		c.crossings(tracks)
		c.occupancy(c.bt.present(int(c.cfg.Rate)))
		if len(c.occ) > 0 {
			occ = append(occ, c.occ[0])
		}
	}
	return c, occ
}

type noPeople struct{}

func (noPeople) Name() string { return "none" }
func (noPeople) Detect(context.Context, blur.Image) ([]blur.Detection, error) {
	return nil, nil
}

func det(x, y float64, w, h int, score float32) blur.Detection {
	return blur.Detection{Box: image.Rect(int(x)-w/2, int(y)-h, int(x)+w/2, int(y)), Score: score}
}

// TestPairWalkingTogetherCountsTwo: two people side by side, close enough
// that their boxes touch, cross the door together. From the fifth
// interval on, the second is half hidden by the first: the detector gives
// only a weak box for them, which the second pass matches to their track;
// thrown away, their track would coast unseen until it was dropped, and
// their crossing would be lost.
func TestPairWalkingTogetherCountsTwo(t *testing.T) {
	var boxes [][]blur.Detection
	for i := range 20 {
		x := 250 + 15*float64(i)
		s := float32(0.7)
		if i >= 5 {
			s = 0.2
		}
		boxes = append(boxes, []blur.Detection{det(x, 300, 40, 120, 0.8), det(x+5, 340, 40, 120, s)})
	}
	c, _ := runBoxes(t, Config{Lines: []Line{door}}, boxes)
	if got := c.Totals()[0]; got.Entries != 2 || got.Exits != 0 {
		t.Errorf("pair: %+v, want 2 in", got)
	}
}

// TestStandingStillStaysOneTrack: a person stands for a minute (300
// intervals at 5 a second), missed by the detector now and then, then
// walks across the line: one crossing, and occupancy 1 throughout.
func TestStandingStillStaysOneTrack(t *testing.T) {
	var boxes [][]blur.Detection
	for i := range 300 {
		if i%7 == 3 || i%11 == 5 {
			boxes = append(boxes, nil) // missed
			continue
		}
		boxes = append(boxes, []blur.Detection{det(300+float64(i%2), 300, 40, 120, 0.6)})
	}
	for i := range 15 {
		boxes = append(boxes, []blur.Detection{det(300+20*float64(i+1), 300, 40, 120, 0.6)})
	}
	zone := Zone{ID: "z", Polygon: []Point{{0, 0}, {0.5, 0}, {0.5, 1}, {0, 1}}}
	c, occ := runBoxes(t, Config{Lines: []Line{door}, Zones: []Zone{zone}}, boxes)
	if got := c.Totals()[0]; got.Entries != 1 || got.Exits != 0 {
		t.Errorf("%+v, want 1 in", got)
	}
	for i, o := range occ[3:300] {
		if o != 1 {
			t.Fatalf("occupancy %d at interval %d while standing, want 1", o, i+3)
		}
	}
	if c.bt.nextID != 1 {
		t.Errorf("%d tracks made, want 1", c.bt.nextID)
	}
}

// TestPeopleThroughTheEdge: a person seen close (a wide box) walks left
// out of the picture over a line close to its left edge, and another
// comes in the same way; the detector loses a person once less than 40%
// of them shows. Anchored on the cut box, the first one's feet would move
// left at half their speed and be lost before they passed the line, and
// the second's first box would already straddle it: neither would count.
// The feet put half the person's known width from the box's far side,
// and a track born at the edge starting beyond it, count both.
func TestPeopleThroughTheEdge(t *testing.T) {
	edge := Line{ID: "edge", From: Point{0.03, 0}, To: Point{0.03, 1}, In: Right}
	walk := func(x0, dx float64) [][]blur.Detection {
		var boxes [][]blur.Detection
		for i := range 30 {
			x := x0 + dx*float64(i)
			r := image.Rect(int(x)-80, 200, int(x)+80, 500).Intersect(image.Rect(0, 0, W, H))
			if r.Dx() < 64 {
				if len(boxes) > 0 {
					break
				}
				continue
			}
			boxes = append(boxes, []blur.Detection{{Box: r, Score: 0.7}})
		}
		return boxes
	}
	c, _ := runBoxes(t, Config{Lines: []Line{edge}}, walk(300, -20))
	if got := c.Totals()[0]; got.Entries != 0 || got.Exits != 1 {
		t.Errorf("leaving through the edge: %+v, want 1 out", got)
	}
	c, _ = runBoxes(t, Config{Lines: []Line{edge}}, walk(-100, 20))
	if got := c.Totals()[0]; got.Entries != 1 || got.Exits != 0 {
		t.Errorf("coming in through the edge: %+v, want 1 in", got)
	}
}

// TestLineDirections: on-screen names of the in direction.
func TestLineDirections(t *testing.T) {
	horiz := Line{ID: "h", From: Point{0.9, 0.5}, To: Point{0.1, 0.5}} // drawn right to left
	vert := Line{ID: "v", From: Point{0.5, 0.1}, To: Point{0.5, 0.9}}
	diag := Line{ID: "d", From: Point{0, 0}, To: Point{1, 1}}
	for _, c := range []struct {
		l      Line
		in     string
		right  bool
		usable bool
	}{
		{horiz, Down, true, true}, {horiz, "↓", true, true}, {horiz, Up, false, true}, {horiz, "↑", false, true},
		{horiz, LeftToRight, true, true}, {horiz, Left, false, false}, {horiz, "→", false, false},
		{vert, Right, true, true}, {vert, "←", false, true}, {vert, Down, false, false},
		{diag, Up, true, true}, {diag, Right, true, true}, {diag, Down, false, true}, {diag, Left, false, true},
		{horiz, "north", false, false},
	} {
		c.l.In = c.in
		right, ok := c.l.inIsRight()
		if ok != c.usable || ok && right != c.right {
			t.Errorf("%s in %q: right %v usable %v, want %v %v", c.l.ID, c.in, right, ok, c.right, c.usable)
		}
	}
	// Down across a horizontal line is in, whichever way it is drawn.
	for _, l := range []Line{{ID: "a", From: Point{0, 0.5}, To: Point{1, 0.5}, In: Down}, {ID: "b", From: Point{1, 0.5}, To: Point{0, 0.5}, In: Down}} {
		var boxes [][]blur.Detection
		for i := range 15 {
			boxes = append(boxes, []blur.Detection{det(400, 200+20*float64(i), 40, 100, 0.8)})
		}
		c, _ := runBoxes(t, Config{Lines: []Line{l}}, boxes)
		if got := c.Totals()[0]; got.Entries != 1 || got.Exits != 0 {
			t.Errorf("line %s walking down: %+v, want 1 in", l.ID, got)
		}
	}
}

// TestStillSmallThingIsNoPerson: once people have walked through the
// scene, something the detector boxes as a person a third of their size
// where it stands (a cone, a post) and that never moves is not counted;
// a person standing still, of a person's size, is.
func TestStillSmallThingIsNoPerson(t *testing.T) {
	var boxes [][]blur.Detection
	for i := range 60 {
		b := []blur.Detection{
			det(100, 300, 16, 40, 0.6),  // a cone, a third of a person's height there
			det(600, 320, 40, 120, 0.7), // a person standing
		}
		for k := range 3 { // people walking across, at several depths
			y := 200 + 100*float64(k)
			b = append(b, det(50+float64((i*20+k*150)%700), y, 30, int(60+0.2*y), 0.8))
		}
		boxes = append(boxes, b)
	}
	zone := Zone{ID: "z", Polygon: []Point{{0, 0.4}, {0.2, 0.4}, {0.2, 0.6}, {0, 0.6}}}      // the cone
	stand := Zone{ID: "s", Polygon: []Point{{0.7, 0.4}, {0.8, 0.4}, {0.8, 0.6}, {0.7, 0.6}}} // the person
	c, occ := runBoxes(t, Config{Zones: []Zone{zone, stand}}, boxes)
	if got := occ[len(occ)-1]; got != 0 {
		t.Errorf("the cone's zone holds %d people at the end, want 0", got)
	}
	if got := c.occ[1]; got != 1 {
		t.Errorf("the standing person's zone holds %d, want 1", got)
	}
}

// stuckPeople answers only when its context ends: an engine saturated by
// faces.
type stuckPeople struct{ calls atomic.Int32 }

func (*stuckPeople) Name() string { return "stuck" }
func (s *stuckPeople) Detect(ctx context.Context, _ blur.Image) ([]blur.Detection, error) {
	s.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestShutdownFlushesWithoutWaitingForDetections: when shutdown begins
// with frames still queued for the counter and the engine busy, the
// counter does not spend the drain time on detections (each would wait
// its full timeout): it moves through the queue and flushes the last
// window well inside the drain time.
func TestShutdownFlushesWithoutWaitingForDetections(t *testing.T) {
	frames := syntheticWalk(t, 60, 15) // 12 detections due at 5 a second
	people := &stuckPeople{}
	c, err := New(Config{Method: MethodDetector, Lines: []Line{door}, Window: time.Minute},
		Deps{Camera: "cam", Metrics: newTestMetrics(t), People: people, DetectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	in := queue.New[*blur.Frame](len(frames), queue.Block, nil)
	for _, f := range frames {
		in.Push(context.Background(), f)
	}
	in.Close()
	out := queue.New[footfall.Event](10, queue.Block, nil)
	drain, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopping, stop := context.WithCancel(context.Background())
	stop() // shutdown has begun
	start := time.Now()
	if err := c.Run(drain, stopping, in, out); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("drained %d frames in %v: it waited for detections", len(frames), took)
	}
	if n := people.calls.Load(); n != 0 {
		t.Errorf("the engine was asked %d times after shutdown began", n)
	}
	if out.Len() != 1 {
		t.Errorf("%d events flushed, want the last window", out.Len())
	}
}

// TestStillThingsAndDuplicates: what the occupancy of a zone must not
// count, each beside what it must (rate 5, so 10 intervals are 2 s).
func TestStillThingsAndDuplicates(t *testing.T) {
	zone := Zone{ID: "z", Polygon: []Point{{0, 0}, {1, 0}, {1, 1}, {0, 1}}}
	cases := []struct {
		name  string
		boxes func(i int) []blur.Detection
		want  int // occupancy at the end
	}{
		{"a thing the detector is never sure of, that never moves", func(int) []blur.Detection {
			return []blur.Detection{det(100, 300, 30, 90, 0.4)}
		}, 0},
		{"a person standing still from the start, plainly seen", func(int) []blur.Detection {
			return []blur.Detection{det(100, 300, 30, 90, 0.7)}
		}, 1},
		{"a person weakly seen who walked in and then stood", func(i int) []blur.Detection {
			return []blur.Detection{det(100+20*float64(min(i, 10)), 300, 30, 90, 0.4)}
		}, 1},
		{"one person boxed twice: the upper body first, then also whole", func(i int) []blur.Detection {
			x := 100 + 10*float64(i)
			upper := det(x-4, 250, 30, 50, 0.6)
			if i < 5 {
				return []blur.Detection{upper}
			}
			return []blur.Detection{det(x, 300, 40, 100, 0.8), upper}
		}, 1},
		{"two people side by side", func(i int) []blur.Detection {
			x := 100 + 10*float64(i)
			return []blur.Detection{det(x, 300, 40, 100, 0.8), det(x+30, 300, 40, 100, 0.8)}
		}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var boxes [][]blur.Detection
			for i := range 26 {
				boxes = append(boxes, tc.boxes(i))
			}
			_, occ := runBoxes(t, Config{Zones: []Zone{zone}}, boxes)
			if got := occ[len(occ)-1]; got != tc.want {
				t.Errorf("occupancy %d at the end, want %d (all: %v)", got, tc.want, occ)
			}
		})
	}
}

// TestSureFirstSightCounts: someone the detector is sure of counts from
// the first detection (the first measure after start-up is right); a box
// it is unsure of waits for the track to be confirmed.
func TestSureFirstSightCounts(t *testing.T) {
	zone := Zone{ID: "z", Polygon: []Point{{0, 0}, {1, 0}, {1, 1}, {0, 1}}}
	for _, tc := range []struct {
		score float32
		want  []int
	}{{0.8, []int{1, 1, 1}}, {0.45, []int{0, 1, 1}}} {
		var boxes [][]blur.Detection
		for i := range 3 {
			boxes = append(boxes, []blur.Detection{det(100+10*float64(i), 300, 40, 100, tc.score)})
		}
		_, occ := runBoxes(t, Config{Zones: []Zone{zone}}, boxes)
		if fmt.Sprint(occ) != fmt.Sprint(tc.want) {
			t.Errorf("score %.2f: occupancy %v, want %v", tc.score, occ, tc.want)
		}
	}
}
