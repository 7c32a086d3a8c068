// Package counter counts people on obscured frames: crossings of
// configured lines, in and out, and the occupancy of configured zones. It
// accepts *blur.Frame only, so it never sees a face, and emits Events that
// carry only numbers.
//
// People are found by a person detector on the obscured picture, a few
// times a second, and followed by a ByteTrack-style tracker (method
// detector, the default); or as moving blobs against a learned background
// on every frame (pure Go, no cgo), followed by a SORT-like tracker
// (method motion). Both use a Kalman filter and Hungarian assignment. A
// crossing is decided by which side of the line a track's
// anchor (the bottom centre of its box) was on, with a hysteresis band, not
// by touching a thin band; so a fast walker who jumps over the line between
// two frames still counts, and someone loitering on it does not count
// again and again. A new track that starts where a lost one ended inherits
// its sides, so an id switch does not count a person twice.
package counter

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/queue"
)

// Deps are what a Counter needs from its wiring.
type Deps struct {
	// Camera names the source in events and metrics.
	Camera string
	// Site names the box's office in events (empty: none).
	Site string
	// Metrics is shared by all counters of a process. Required.
	Metrics *Metrics
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now is the clock for the run's epoch; it defaults to time.Now.
	Now func() time.Time
	// OnCrossing, if set, is called for every crossing counted (for
	// evaluation against hand-labelled ground truth: it carries the frame
	// number and direction, nothing about the person).
	OnCrossing func(Crossing)
	// OnOccupancy, if set, is called with each zone's smoothed occupancy
	// each time it is measured (for evaluation, as OnCrossing).
	OnOccupancy func(Occupancy)
	// People finds people in obscured pictures: required by the detector
	// method (the engine's low-priority network, in tiles). It is called
	// from the counter's goroutine only.
	People blur.Detector
	// DetectTimeout bounds a wait for People; a detection that takes
	// longer is skipped and the tracks coast. 0: no bound (a file job,
	// where the engine is never too busy for long).
	DetectTimeout time.Duration
}

// Occupancy is one zone's smoothed occupancy at a frame.
type Occupancy struct {
	Frame  uint64
	Zone   string
	People int
}

func (o Occupancy) String() string {
	return fmt.Sprintf("occupancy frame=%d zone=%s people=%d", o.Frame, o.Zone, o.People)
}

func (c Crossing) String() string {
	return fmt.Sprintf("crossing frame=%d line=%s direction=%s", c.Frame, c.Line, c.Direction)
}

// Crossing is one counted line crossing.
type Crossing struct {
	Frame     uint64 // the frame's sequence number in its source
	Line      string
	Direction string // "in" or "out"
}

// Counter counts one camera. It is not safe for concurrent use: frames of
// one camera go through in order.
type Counter struct {
	cfg        Config
	camera     string
	site       string
	onCrossing func(Crossing)
	onOcc      func(Occupancy)
	people     blur.Detector
	timeout    time.Duration
	seqNow     uint64
	log        *slog.Logger
	m          cameraMetrics
	epoch      int64

	started bool
	width   int
	height  int
	fg      *foreground
	tr      *tracker     // motion
	bt      *byteTracker // detector
	lastDet time.Duration
	detects bool          // lastDet is set
	waited  time.Duration // in People.Detect, this frame
	lines   []pixLine
	zones   []pixZone
	base    time.Time // wall time of stream time 0

	seq     uint64
	window  int64 // index of the current window
	entries []int
	exits   []int
	occHist [][]int // per zone, the last Smooth raw occupancies
	occ     []int   // per zone, smoothed
	peak    []int

	totals []footfall.LineCount
}

// New checks cfg (after Defaults).
func New(cfg Config, deps Deps) (*Counter, error) {
	cfg.Defaults()
	if err := cfg.Validate("counter"); err != nil {
		return nil, err
	}
	if deps.Metrics == nil {
		return nil, errors.New("counter: no metrics")
	}
	if cfg.Method == MethodDetector && deps.People == nil {
		return nil, errors.New("counter: method detector needs a person detector")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	c := &Counter{
		cfg:        cfg,
		camera:     deps.Camera,
		site:       deps.Site,
		onCrossing: deps.OnCrossing,
		onOcc:      deps.OnOccupancy,
		people:     deps.People,
		timeout:    deps.DetectTimeout,
		log:        deps.Logger.With("component", "counter", "camera", deps.Camera),
		m:          deps.Metrics.forCamera(deps.Camera, cfg),
		epoch:      deps.Now().UnixMilli(),
		entries:    make([]int, len(cfg.Lines)),
		exits:      make([]int, len(cfg.Lines)),
		occHist:    make([][]int, len(cfg.Zones)),
		occ:        make([]int, len(cfg.Zones)),
		peak:       make([]int, len(cfg.Zones)),
		totals:     make([]footfall.LineCount, len(cfg.Lines)),
	}
	for i, l := range cfg.Lines {
		c.totals[i].ID = l.ID
	}
	return c, nil
}

func (c *Counter) start(f *blur.Frame) {
	c.started = true
	c.size(f.Width(), f.Height())
	m := f.Meta()
	c.base = m.Captured.Add(-m.PTS)
	c.window = int64(m.PTS / c.cfg.Window)
}

// size sets up everything that is in pixels for pictures of w x h. Lines
// and zones are configured in normalized coordinates, so they keep their
// meaning at any size; tracks do not carry over (a person half-way across
// a line when the camera changes its resolution is not counted).
func (c *Counter) size(w, h int) {
	c.width, c.height = w, h
	if c.cfg.Method == MethodMotion {
		c.fg = newForeground(w, h, c.cfg.MinArea)
		c.tr = newTracker(c.cfg.MaxAge, c.cfg.MinHits, len(c.cfg.Lines))
	} else {
		perSec := func(d float64) int { return max(1, int(math.Round(d*c.cfg.Rate))) }
		c.bt = newByteTracker(w, h, len(c.cfg.Lines), 2, perSec(c.cfg.Lost.Seconds()), perSec(stillFor.Seconds()))
		c.detects = false
	}
	c.lines, c.zones = c.lines[:0], c.zones[:0]
	for _, l := range c.cfg.Lines {
		c.lines = append(c.lines, newPixLine(l, w, h, c.cfg.Hysteresis))
	}
	for _, z := range c.cfg.Zones {
		c.zones = append(c.zones, newPixZone(z, w, h))
	}
}

// Process counts one frame and returns the events of windows that this
// frame closed (usually none, at most a few after a gap in the stream).
// ctx bounds a wait for the person detector.
func (c *Counter) Process(ctx context.Context, f *blur.Frame) []footfall.Event {
	if !f.Valid() {
		return nil
	}
	start := time.Now()
	c.waited = 0
	if !c.started {
		c.start(f)
	}
	var events []footfall.Event
	pts := f.Meta().PTS
	c.seqNow = f.Meta().Seq
	for w := int64(pts / c.cfg.Window); c.window < w; {
		events = append(events, c.emit())
	}
	if f.Width() != c.width || f.Height() != c.height {
		// The camera's resolution changed: windows that ended are closed
		// above, the current one keeps what it counted, and counting goes
		// on at the new size.
		c.log.Info("picture size changed: counting at the new size", "from", image.Pt(c.width, c.height), "to", f.Bounds().Size())
		c.size(f.Width(), f.Height())
	}
	if c.cfg.Method == MethodMotion {
		// A fail-closed frame is a coarse mosaic: it would look like
		// motion everywhere. Tracks coast through it instead.
		var boxes []image.Rectangle
		if f.FailClosed() == "" {
			boxes = c.fg.blobs(f.Pix(), f.Width())
		}
		tracks := c.tr.update(boxes)
		c.m.tracks.Set(float64(len(tracks)))
		c.crossings(tracks)
		c.occupancy(tracks)
	} else {
		c.detect(ctx, f, pts)
	}
	c.m.frames.Inc()
	// The counter's own time: waiting for the engine is the engine's.
	c.m.seconds.Observe((time.Since(start) - c.waited).Seconds())
	return events
}

// detect runs the person detector on f if a detection is due (Rate a
// second of stream time) and f is not a fail-closed mosaic, and moves the
// tracks on. A detection that fails or times out is skipped: the tracks
// coast to the next.
func (c *Counter) detect(ctx context.Context, f *blur.Frame, pts time.Duration) {
	period := time.Duration(float64(time.Second) / c.cfg.Rate)
	// A little slack: frame timestamps that fall just short of the period
	// must not push every detection one frame later.
	if c.detects && pts-c.lastDet < period-period/8 {
		return
	}
	if f.FailClosed() != "" {
		return
	}
	if ctx.Err() != nil { // shutting down: the engine is not asked
		c.m.skipped.Inc()
		return
	}
	steps := 1
	if c.detects {
		steps = max(1, int(math.Round(float64(pts-c.lastDet)/float64(period))))
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	start := time.Now()
	dets, err := c.people.Detect(ctx, blur.Image{Width: f.Width(), Height: f.Height(), Pix: f.Pix()})
	c.waited = time.Since(start)
	c.m.detect.Observe(c.waited.Seconds())
	if err != nil {
		c.m.skipped.Inc()
		c.log.Debug("person detection skipped", "err", err)
		return
	}
	c.lastDet, c.detects = pts, true
	tracks := c.bt.update(dets, steps)
	c.crossings(tracks)
	// A person missed by one detection in a second is still there.
	pr := c.bt.present(int(math.Ceil(c.cfg.Rate)))
	c.occupancy(pr)
}

func (c *Counter) crossings(tracks []*track) {
	for _, t := range tracks {
		a := t.anchor()
		for i, l := range c.lines {
			s := l.side(a)
			if s == 0 {
				continue
			}
			prev := t.sides[i]
			if prev == 0 && t.from != nil {
				prev = l.side(*t.from)
			}
			t.sides[i] = s
			if prev == 0 || prev == s || !l.within(a) && !l.within(t.lastAnchor) {
				continue
			}
			ltr := s > 0 // moved from the left (-) to the right (+) side
			dir := "in"
			if ltr == l.inIsLTR {
				c.entries[i]++
				c.totals[i].Entries++
				c.m.entries[i].Inc()
			} else {
				dir = "out"
				c.exits[i]++
				c.totals[i].Exits++
				c.m.exits[i].Inc()
			}
			if c.onCrossing != nil {
				c.onCrossing(Crossing{Frame: c.seqNow, Line: l.id, Direction: dir})
			}
		}
	}
}

// occupancy counts tracks whose anchor is in each zone, smoothed by a
// median over the last Smooth frames: it is measured, not entries minus
// exits, so it cannot drift and needs no reset.
func (c *Counter) occupancy(tracks []*track) {
	for i, z := range c.zones {
		n := 0
		for _, t := range tracks {
			if z.contains(t.anchor()) {
				n++
			}
		}
		h := append(c.occHist[i], n)
		if len(h) > c.cfg.Smooth {
			h = h[len(h)-c.cfg.Smooth:]
		}
		c.occHist[i] = h
		sorted := slices.Clone(h)
		slices.Sort(sorted)
		c.occ[i] = sorted[len(sorted)/2]
		c.peak[i] = max(c.peak[i], c.occ[i])
		c.m.occupancy[i].Set(float64(c.occ[i]))
		if c.onOcc != nil {
			c.onOcc(Occupancy{Frame: c.seqNow, Zone: z.id, People: c.occ[i]})
		}
	}
}

// emit closes the current window.
func (c *Counter) emit() footfall.Event {
	ev := footfall.Event{
		Schema:      footfall.SchemaV1,
		Site:        c.site,
		Camera:      c.camera,
		Epoch:       c.epoch,
		Seq:         c.seq,
		WindowStart: c.base.Add(time.Duration(c.window) * c.cfg.Window).UTC(),
		WindowEnd:   c.base.Add(time.Duration(c.window+1) * c.cfg.Window).UTC(),
		Lines:       make([]footfall.LineCount, len(c.cfg.Lines)),
		Zones:       make([]footfall.ZoneCount, len(c.cfg.Zones)),
	}
	for i, l := range c.cfg.Lines {
		ev.Lines[i] = footfall.LineCount{ID: l.ID, Entries: c.entries[i], Exits: c.exits[i]}
		c.entries[i], c.exits[i] = 0, 0
	}
	for i, z := range c.cfg.Zones {
		ev.Zones[i] = footfall.ZoneCount{ID: z.ID, Occupancy: c.occ[i], Peak: c.peak[i], Capacity: z.Capacity}
		c.peak[i] = c.occ[i]
	}
	c.seq++
	c.window++
	c.m.events.Inc()
	return ev
}

// Flush closes the current, partial window (at the end of a file or on
// shutdown) so that no counted crossing is left unreported. Its
// WindowEnd is the window's nominal end.
func (c *Counter) Flush() []footfall.Event {
	if !c.started {
		return nil
	}
	return []footfall.Event{c.emit()}
}

// Totals are the crossings counted since New, per line.
func (c *Counter) Totals() []footfall.LineCount { return slices.Clone(c.totals) }

// ErrUndelivered is returned by Run when an event could not be handed on
// before its context ended (a shutdown whose drain time ran out).
var ErrUndelivered = errors.New("count event not delivered")

// Run counts frames from in until it is closed and drained or ctx ends,
// pushing events to out, whose policy must be queue.Block: events are never
// dropped, so Run waits for room with ctx. The caller gives a context that
// outlives shutdown by its drain time, so the partial window flushed
// before returning still reaches out.
//
// Person detections wait on detect, which the caller ends when shutdown
// begins: the frames still queued then move the tracks on without a
// detection, so however busy the engine is, the drain time goes to
// flushing the last window rather than to detections nobody will use.
func (c *Counter) Run(ctx, detect context.Context, in *queue.Queue[*blur.Frame], out *queue.Queue[footfall.Event]) error {
	push := func(evs []footfall.Event) error {
		for _, e := range evs {
			if err := out.Push(ctx, e); err != nil {
				c.log.Error("count event not delivered", "epoch", e.Epoch, "seq", e.Seq, "err", err)
				return fmt.Errorf("counter %s: %w: epoch=%d seq=%d (%v)", c.camera, ErrUndelivered, e.Epoch, e.Seq, err)
			}
		}
		return nil
	}
	for {
		f, ok := in.Pop(ctx)
		if !ok {
			if err := push(c.Flush()); err != nil {
				return err
			}
			return ctx.Err()
		}
		evs := c.Process(detect, f)
		f.Done()
		if err := push(evs); err != nil {
			return err
		}
	}
}
