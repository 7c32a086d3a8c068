package counter

import (
	"context"
	"image"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The tracker and line logic are tested on synthetic detections: boxes
// that move as scripted, frame by frame.

const W, H = 800, 600

// person is a scripted box: its anchor (bottom centre) at frame i.
type person struct {
	from, to   int // first and last frame it is visible
	x0, y0     float64
	vx, vy     float64
	w, h       int
	hideFrames map[int]bool // occluded frames (no detection)
}

func (p person) box(i int) (image.Rectangle, bool) {
	if i < p.from || i > p.to || p.hideFrames[i] {
		return image.Rectangle{}, false
	}
	t := float64(i - p.from)
	x, y := p.x0+p.vx*t, p.y0+p.vy*t
	return image.Rect(int(x)-p.w/2, int(y)-p.h, int(x)+p.w/2, int(y)), true
}

// runScript feeds the tracker and line logic directly (no pixels).
func runScript(t *testing.T, cfg Config, frames int, people []person) *Counter {
	t.Helper()
	cfg.Method = MethodMotion
	c, err := New(cfg, Deps{Camera: "t", Metrics: newTestMetrics(t)})
	if err != nil {
		t.Fatal(err)
	}
	c.started = true
	c.width, c.height = W, H
	c.tr = newTracker(c.cfg.MaxAge, c.cfg.MinHits, len(c.cfg.Lines))
	for _, l := range c.cfg.Lines {
		c.lines = append(c.lines, newPixLine(l, W, H, c.cfg.Hysteresis))
	}
	for _, z := range c.cfg.Zones {
		c.zones = append(c.zones, newPixZone(z, W, H))
	}
	for i := 0; i < frames; i++ {
		var boxes []image.Rectangle
		for _, p := range people {
			if b, ok := p.box(i); ok {
				boxes = append(boxes, b)
			}
		}
		tracks := c.tr.update(boxes)
		c.crossings(tracks)
		c.occupancy(tracks)
	}
	return c
}

func newTestMetrics(t *testing.T) *Metrics {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// door is a vertical line at x = 400 px across the whole height.
var door = Line{ID: "door", From: Point{0.5, 0}, To: Point{0.5, 1}, In: LeftToRight}

func TestLineCrossings(t *testing.T) {
	cases := []struct {
		name      string
		people    []person
		frames    int
		ins, outs int
	}{
		{"walk in", []person{{from: 0, to: 60, x0: 250, y0: 300, vx: 5, w: 40, h: 100}}, 61, 1, 0},
		{"walk out", []person{{from: 0, to: 60, x0: 550, y0: 300, vx: -5, w: 40, h: 100}}, 61, 0, 1},
		// 60 px a frame: the anchor never lands inside the band, and a
		// band-touching counter misses it (ultralytics PR 25492).
		{"fast mover", []person{{from: 0, to: 10, x0: 100, y0: 300, vx: 60, w: 40, h: 100}}, 11, 1, 0},
		// Standing on the line and swaying +-5 px: within the hysteresis band.
		{"loiter on line", []person{{from: 0, to: 5, x0: 300, y0: 300, vx: 20, w: 40, h: 100},
			{from: 6, to: 200, x0: 400, y0: 300, vx: 0, w: 40, h: 100}}, 200, 0, 0},
		// Two people side by side cross together: two entries.
		{"two together", []person{
			{from: 0, to: 60, x0: 250, y0: 200, vx: 5, w: 40, h: 100},
			{from: 0, to: 60, x0: 250, y0: 420, vx: 5, w: 40, h: 100}}, 61, 2, 0},
		// Occluded for 6 frames right at the line: the track coasts.
		{"occlusion", []person{{from: 0, to: 60, x0: 250, y0: 300, vx: 5, w: 40, h: 100,
			hideFrames: map[int]bool{28: true, 29: true, 30: true, 31: true, 32: true, 33: true}}}, 61, 1, 0},
		// Walks in, turns round, walks out: one each.
		{"in and back", []person{
			{from: 0, to: 40, x0: 300, y0: 300, vx: 5, w: 40, h: 100},
			{from: 41, to: 80, x0: 500, y0: 300, vx: -5, w: 40, h: 100}}, 81, 1, 1},
		// Walking past the end of the segment is no crossing.
		{"past the end", []person{{from: 0, to: 60, x0: 250, y0: 300, vx: 5, w: 40, h: 100}}, 61, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Lines: []Line{door}}
			if tc.name == "past the end" {
				cfg.Lines = []Line{{ID: "door", From: Point{0.5, 0.6}, To: Point{0.5, 1}}}
			}
			c := runScript(t, cfg, tc.frames, tc.people)
			got := c.Totals()[0]
			if got.Entries != tc.ins || got.Exits != tc.outs {
				t.Errorf("in/out %d/%d, want %d/%d", got.Entries, got.Exits, tc.ins, tc.outs)
			}
		})
	}
}

// TestIDSwitchDoesNotDoubleCount: the detector loses a person just after
// they crossed (longer than the tracker coasts) and finds them again a few
// pixels on; the new track must not count the crossing a second time, and
// a back-and-forth of lost tracks on the line must not inflate counts
// (supervision issue 2578 saw 7/9 become 97/95).
func TestIDSwitchDoesNotDoubleCount(t *testing.T) {
	hide := map[int]bool{}
	for i := 45; i < 58; i++ {
		hide[i] = true
	}
	p := person{from: 0, to: 100, x0: 250, y0: 300, vx: 5, w: 40, h: 100, hideFrames: hide}
	c := runScript(t, Config{Lines: []Line{door}}, 101, []person{p})
	if got := c.Totals()[0]; got.Entries != 1 || got.Exits != 0 {
		t.Errorf("in/out %d/%d, want 1/0", got.Entries, got.Exits)
	}
	// Flicker: detected every third frame only, while walking across.
	flicker := map[int]bool{}
	for i := 0; i < 100; i++ {
		if i%3 != 0 {
			flicker[i] = true
		}
	}
	p = person{from: 0, to: 100, x0: 200, y0: 300, vx: 4, w: 40, h: 100, hideFrames: flicker}
	c = runScript(t, Config{Lines: []Line{door}, MinHits: 1}, 101, []person{p})
	if got := c.Totals()[0]; got.Entries != 1 || got.Exits != 0 {
		t.Errorf("flicker: in/out %d/%d, want 1/0", got.Entries, got.Exits)
	}
}

func TestZoneOccupancySmoothed(t *testing.T) {
	zone := Zone{ID: "left", Polygon: []Point{{0, 0}, {0.5, 0}, {0.5, 1}, {0, 1}}, Capacity: 2}
	people := []person{
		{from: 0, to: 100, x0: 100, y0: 200, vx: 0, w: 40, h: 100},
		{from: 0, to: 100, x0: 200, y0: 400, vx: 0, w: 40, h: 100},
		{from: 0, to: 100, x0: 600, y0: 300, vx: 0, w: 40, h: 100}, // outside
	}
	c := runScript(t, Config{Zones: []Zone{zone}}, 101, people)
	if c.occ[0] != 2 {
		t.Errorf("occupancy %d, want 2", c.occ[0])
	}
	if v := testutil.ToFloat64(c.m.occupancy[0]); v != 2 {
		t.Errorf("metric %v", v)
	}
}

func TestPolygonContains(t *testing.T) {
	z := newPixZone(Zone{ID: "z", Polygon: []Point{{0.1, 0.1}, {0.9, 0.1}, {0.5, 0.9}}}, 100, 100)
	for _, tc := range []struct {
		p  vec
		in bool
	}{{vec{50, 20}, true}, {vec{50, 80}, true}, {vec{15, 80}, false}, {vec{95, 50}, false}} {
		if z.contains(tc.p) != tc.in {
			t.Errorf("%v: got %v", tc.p, !tc.in)
		}
	}
}

func TestHungarianOptimal(t *testing.T) {
	inf := math.Inf(1)
	cost := [][]float64{{4, 1, 3}, {2, 0, 5}, {3, 2, 2}}
	got := hungarian(cost)
	if got[0] != 1 || got[1] != 0 || got[2] != 2 {
		t.Errorf("got %v, want [1 0 2]", got)
	}
	got = hungarian([][]float64{{inf, 1}, {inf, inf}, {0.5, inf}})
	if got[0] != 1 || got[1] != -1 || got[2] != 0 {
		t.Errorf("gated: got %v", got)
	}
}

func TestConfigValidateNamesKey(t *testing.T) {
	good := func() Config {
		return Config{Method: MethodMotion, Lines: []Line{door}, Zones: []Zone{{ID: "z", Polygon: []Point{{0, 0}, {1, 0}, {1, 1}}}}}
	}
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Lines[0].ID = "" }, "counter.lines[0].id"},
		{func(c *Config) { c.Lines[0].ID = "bad id!" }, "counter.lines[0].id"},
		{func(c *Config) { c.Lines[0].From = Point{1.5, 0} }, "counter.lines[0].from"},
		{func(c *Config) { c.Lines[0].To = c.Lines[0].From }, "counter.lines[0].to"},
		{func(c *Config) { c.Lines[0].In = "up" }, "counter.lines[0].in"},
		{func(c *Config) { c.Lines[0].In = "sideways" }, "counter.lines[0].in"},
		{func(c *Config) { c.Method = "hog" }, "counter.method"},
		{func(c *Config) { c.Rate = 100 }, "counter.rate"},
		{func(c *Config) { c.Lost = time.Millisecond }, "counter.lost"},
		{func(c *Config) { c.Zones[0].ID = "door" }, "counter.zones[0].id"},
		{func(c *Config) { c.Zones[0].Polygon = c.Zones[0].Polygon[:2] }, "counter.zones[0].polygon"},
		{func(c *Config) { c.Zones[0].Polygon[1] = Point{2, 2} }, "counter.zones[0].polygon[1]"},
		{func(c *Config) { c.Zones[0].Capacity = -1 }, "counter.zones[0].capacity"},
		{func(c *Config) { c.Window = time.Millisecond }, "counter.window"},
		{func(c *Config) { c.Hysteresis = 0.5 }, "counter.hysteresis"},
		{func(c *Config) { c.MaxAge = -1 }, "counter.max_age"},
	}
	for _, tc := range cases {
		c := good()
		c.Defaults()
		if err := c.Validate("counter"); err != nil {
			t.Fatal(err)
		}
		tc.mut(&c)
		if err := c.Validate("counter"); err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
			t.Errorf("got %v, want an error naming %s", err, tc.want)
		}
	}
}

// TestEventsAreAnonymousAndSequenced runs real frames through Run: events
// come once per window in order, carry only the documented fields, and the
// last partial window is flushed on close.
func TestEventsAreAnonymousAndSequenced(t *testing.T) {
	evs := countFrames(t, syntheticWalk(t, 95, 10)) // 9.5 s at 10 fps, one figure walking across
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5 (4 full windows of 2 s and the flushed rest)", len(evs))
	}
	if ins := checkWindows(t, evs); ins != 1 {
		t.Errorf("entries over all events: %d, want 1", ins)
	}
}

// TestSizeChangeKeepsCounting: the camera switches from 800x600 to 400x300
// at 7 s (its settings were edited) and back at 14 s. A figure crosses the
// door before the first switch, one between, one after: every crossing is
// counted, windows stay contiguous and sequenced, and the window the
// switch falls in keeps what it had counted.
func TestSizeChangeKeepsCounting(t *testing.T) {
	size := func(i int) (int, int) {
		if i >= 70 && i < 140 {
			return W / 2, H / 2
		}
		return W, H
	}
	evs := countFrames(t, renderWalks(t, 200, 10, size, []int{20, 85, 155}))
	if len(evs) != 10 {
		t.Fatalf("%d events, want 10", len(evs))
	}
	if ins := checkWindows(t, evs); ins != 3 {
		t.Errorf("entries over all events: %d, want 3 (one before, one during, one after the smaller size)", ins)
	}
}

// countFrames runs a counter (a door line, 2 s windows, one zone) over
// frames and returns its events.
func countFrames(t *testing.T, frames []*blur.Frame) []footfall.Event {
	t.Helper()
	c, err := New(Config{Method: MethodMotion, Lines: []Line{door}, Window: 2 * time.Second,
		Zones: []Zone{{ID: "all", Polygon: []Point{{0, 0}, {1, 0}, {1, 1}, {0, 1}}, Capacity: 5}}},
		Deps{Camera: "cam", Metrics: newTestMetrics(t), Now: func() time.Time { return time.UnixMilli(1700000000000) }})
	if err != nil {
		t.Fatal(err)
	}
	in := queue.New[*blur.Frame](4, queue.Block, nil)
	out := queue.New[footfall.Event](100, queue.Block, nil)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background(), context.Background(), in, out) }()
	for _, f := range frames {
		in.Push(context.Background(), f)
	}
	in.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	out.Close()
	var evs []footfall.Event
	for e := range out.C() {
		evs = append(evs, e)
	}
	return evs
}

// checkWindows checks that events are anonymous, sequenced and contiguous
// 2 s windows, and returns the entries they add up to.
func checkWindows(t *testing.T, evs []footfall.Event) int {
	t.Helper()
	ins := 0
	for i, e := range evs {
		if e.Seq != uint64(i) || e.Epoch != 1700000000000 || e.Schema != footfall.SchemaV1 || e.Camera != "cam" {
			t.Errorf("event %d: %+v", i, e)
		}
		if e.WindowEnd.Sub(e.WindowStart) != 2*time.Second || (i > 0 && !e.WindowStart.Equal(evs[i-1].WindowEnd)) {
			t.Errorf("event %d window %v..%v", i, e.WindowStart, e.WindowEnd)
		}
		ins += e.Lines[0].Entries
	}
	return ins
}
