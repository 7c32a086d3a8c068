// Package blur is the only place where un-obscured pixels are looked at. It
// finds faces with a Detector, obscures them irreversibly, and turns a
// *frame.Raw into a *blur.Frame, the only frame type that sinks and the
// counter accept.
//
// It fails closed: a frame the detector did not vouch for in time (it
// errored, panicked, returned nonsense, was still busy, missed the per-frame
// deadline, or has not answered once since start-up) is obscured whole, or
// dropped if so configured, and counted with the reason.
package blur

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/veilproject/veil/frame"
)

// Detection is one face found by a Detector, in frame pixels.
type Detection struct {
	Box   image.Rectangle
	Score float32
}

// IoU is the intersection over union of two boxes (0 when either is
// empty), as detectors and trackers compare them.
func IoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	ia := float64(in.Dx() * in.Dy())
	return ia / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ia)
}

// Image is a read-only view of BGR24 pixels handed to a Detector. The
// detector must not keep Pix after Detect returns.
type Image struct {
	Width, Height int
	Pix           []byte
}

// Detector finds faces. Implementations need not be safe for concurrent use:
// the stage calls Detect from one goroutine at a time.
type Detector interface {
	// Detect returns the faces in img. It should give up when ctx ends, but
	// the stage does not rely on that: it stops waiting at the deadline.
	Detect(ctx context.Context, img Image) ([]Detection, error)
	// Name identifies the model in logs and metrics.
	Name() string
}

// Reasons a frame failed closed; the values label
// veil_blur_fail_closed_frames_total.
const (
	ReasonWarmup   = "warmup"   // the detector has not answered once yet
	ReasonBusy     = "busy"     // the detector was still working on an older frame
	ReasonDeadline = "deadline" // no answer within Config.Deadline
	ReasonError    = "error"    // the detector returned an error
	ReasonPanic    = "panic"    // the detector panicked
	ReasonInvalid  = "invalid"  // the detector returned boxes that cannot be right
)

// Search modes.
const (
	SearchRegions = "regions"
	SearchFull    = "full"
)

// Reasons lists every fail-closed reason, for pre-registering metrics.
var reasons = []string{ReasonWarmup, ReasonBusy, ReasonDeadline, ReasonError, ReasonPanic, ReasonInvalid}

// ErrDropped is returned by Obscure for a frame that failed closed while
// Config.OnFailure is "drop".
var ErrDropped = errors.New("blur: frame dropped: detector could not vouch for it")

// Config is the obscuring policy. The zero value is completed by Defaults.
type Config struct {
	// Mode is blur, mosaic or fill. It defaults to blur.
	Mode Mode `yaml:"mode"`
	// Margin enlarges each face box by this fraction of its size on every
	// side before obscuring, to cover hair, ears and detector jitter. It
	// defaults to 0.25 and must be within [0, 2].
	Margin float64 `yaml:"margin"`
	// MosaicCells is the number of cells across a face in mosaic mode. It
	// defaults to 6 and must be within [1, 8].
	MosaicCells int `yaml:"mosaic_cells"`
	// BlurKernel is the box-blur kernel as a fraction of the face box's
	// larger side in blur mode. It defaults to 1.0 and must be at least 0.5.
	BlurKernel float64 `yaml:"blur_kernel"`
	// Search is where the detector looks on each frame: "regions" (the
	// default) runs it where faces can newly appear (where the picture
	// moved, and ahead of faces already seen moving) and on the whole frame
	// every SweepInterval, at start-up and on a scene change; "full" runs
	// it on every whole frame.
	Search string `yaml:"search"`
	// SweepInterval is the longest time between two full-frame searches in
	// regions mode. It defaults to 1s and is at most 1s.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// Hold keeps a face obscured this long (stream time) after its last
	// detection; it must be longer than SweepInterval, so that a face that
	// stays still is held until the next sweep finds it again. It defaults
	// to 1.5s (0.25s with search: full, where it only bridges detector
	// misses, as 5 frames did before holding went by time); a negative
	// value disables holding (for stills).
	Hold time.Duration `yaml:"hold"`
	// HoldGrow grows a held box by this fraction of its size per second
	// held. It defaults to 0.5.
	HoldGrow float64 `yaml:"hold_grow"`
	// Deadline is the longest the stage waits for the detector on one frame
	// before obscuring it whole. It defaults to 2s.
	Deadline time.Duration `yaml:"deadline"`
	// OnFailure is what happens to a frame the detector did not vouch for:
	// "obscure" (the whole frame, the default) or "drop".
	OnFailure string `yaml:"on_failure"`
}

// Defaults fills unset fields with their documented defaults.
func (c *Config) Defaults() {
	if c.Mode == "" {
		c.Mode = ModeBlur
	}
	if c.Margin == 0 {
		c.Margin = 0.25
	}
	if c.MosaicCells == 0 {
		c.MosaicCells = 6
	}
	if c.BlurKernel == 0 {
		c.BlurKernel = 1.0
	}
	if c.Search == "" {
		c.Search = SearchRegions
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Second
	}
	if c.Hold == 0 {
		c.Hold = 1500 * time.Millisecond
		if c.Search == SearchFull {
			c.Hold = 250 * time.Millisecond // only detector misses to bridge
		}
	}
	if c.HoldGrow == 0 {
		c.HoldGrow = 0.5
	}
	if c.Deadline == 0 {
		c.Deadline = 2 * time.Second
	}
	if c.OnFailure == "" {
		c.OnFailure = "obscure"
	}
}

// Validate names the first key that is out of range. prefix is the key's
// path in the YAML file (e.g. "blur").
func (c *Config) Validate(prefix string) error {
	key := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	if err := c.Mode.validate(); err != nil {
		return fmt.Errorf("%s: %w", key("mode"), err)
	}
	if c.Margin < 0 || c.Margin > 2 || math.IsNaN(c.Margin) {
		return fmt.Errorf("%s: %v is outside [0, 2]", key("margin"), c.Margin)
	}
	if c.MosaicCells < 1 || c.MosaicCells > MaxMosaicCells {
		return fmt.Errorf("%s: %d is outside [1, %d]: more cells would leave a face recognisable", key("mosaic_cells"), c.MosaicCells, MaxMosaicCells)
	}
	if c.BlurKernel < MinBlurKernel || math.IsNaN(c.BlurKernel) {
		return fmt.Errorf("%s: %v is below %v: a smaller kernel leaves a face recognisable", key("blur_kernel"), c.BlurKernel, MinBlurKernel)
	}
	switch c.Search {
	case SearchRegions, SearchFull:
	default:
		return fmt.Errorf("%s: %q (want regions or full)", key("search"), c.Search)
	}
	if c.SweepInterval <= 0 || c.SweepInterval > time.Second {
		return fmt.Errorf("%s: %v is outside (0, 1s]: a face that sits still is only found by a sweep", key("sweep_interval"), c.SweepInterval)
	}
	if c.Search == SearchRegions && c.Hold <= c.SweepInterval {
		return fmt.Errorf("%s: %v must be longer than sweep_interval (%v), or a face that sits still is shown between sweeps", key("hold"), c.Hold, c.SweepInterval)
	}
	if c.HoldGrow < 0 || math.IsNaN(c.HoldGrow) {
		return fmt.Errorf("%s: %v is negative", key("hold_grow"), c.HoldGrow)
	}
	if c.Deadline <= 0 {
		return fmt.Errorf("%s: %v must be positive", key("deadline"), c.Deadline)
	}
	if c.OnFailure != "obscure" && c.OnFailure != "drop" {
		return fmt.Errorf("%s: %q (want obscure or drop)", key("on_failure"), c.OnFailure)
	}
	return nil
}

// Deps are what a Stage needs from its wiring.
type Deps struct {
	// Camera labels this stage's metrics and logs.
	Camera string
	// Detector finds faces. Required.
	Detector Detector
	// Metrics is shared by all stages of one process. Required.
	Metrics *Metrics
	// Logger defaults to discarding.
	Logger *slog.Logger
	// SweepPhase is where in each sweep interval this camera's sweeps
	// fall, as a fraction of it (0 to 1). A service spreads its cameras
	// over the interval (see Stage.sweepDue).
	SweepPhase float64
	// Parallel is how many detector calls the stage may have at once (1 if
	// unset): the lanes of the engine behind Detector, which must then be
	// safe for that many concurrent calls. A frame's crops are searched
	// side by side, and in full search a file job detects frames ahead
	// (Ahead).
	Parallel int
}

// Stage obscures the frames of one camera. Obscure and Run must not be
// called concurrently with each other: frames of one camera go through in
// order, since held boxes follow faces from frame to frame.
type Stage struct {
	cfg    Config
	camera string
	det    Detector
	log    *slog.Logger
	m      stageMetrics
	ob     obscurer
	hold   holder
	size   image.Point // of the last frame: held boxes are in its pixels
	mot    motion
	// motionHook replaces the motion finder (tests: one that errs).
	motionHook func(Image) ([]image.Rectangle, bool, error)
	swept      bool          // a full-frame search has succeeded
	sweep      time.Duration // stream time of the last one
	phase      time.Duration // where this camera's sweeps fall in the interval
	ready      atomic.Bool

	reqs    chan *request
	idle    chan struct{} // a token per worker that is free
	stop    chan struct{}
	done    chan struct{} // closed when every worker has stopped
	running atomic.Int32  // workers not yet stopped
	closing sync.Once

	lastWarn time.Time
	warned   map[string]int
}

type request struct {
	img    Image
	rect   image.Rectangle // the part of img to search; empty: all of it
	ctx    context.Context
	copied chan struct{}
	res    chan result
	// A whole-frame search reads the frame's own pixels, lent, not a
	// copy: copying 2.7 MB at 720p for every sweep (and, in a file job,
	// every frame) cost a frame-sized buffer per search in flight
	// (measured: docs/benchmarks/figures-from-code-comments.md). The
	// worker and the frame's Finish agree on who owns the pixels after
	// (lent, then done or abandoned; takeBack).
	lent atomic.Int32
}

const (
	lentOut       = iota // the detector may be reading the pixels
	lentDone             // it has returned: they are the stage's again
	lentAbandoned        // the stage gave up on it: the worker puts them away
)

type result struct {
	dets []Detection
	err  error
	pan  bool
}

// New checks cfg (after Defaults) and starts the detector's worker
// goroutine. Close stops it.
func New(cfg Config, deps Deps) (*Stage, error) {
	cfg.Defaults()
	if err := cfg.Validate("blur"); err != nil {
		return nil, err
	}
	if deps.Detector == nil {
		return nil, errors.New("blur: no detector")
	}
	if deps.Metrics == nil {
		return nil, errors.New("blur: no metrics")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stage{
		cfg:    cfg,
		camera: deps.Camera,
		det:    deps.Detector,
		log:    log.With("component", "blur", "camera", deps.Camera, "detector", deps.Detector.Name()),
		m:      deps.Metrics.forCamera(deps.Camera),
		ob:     obscurer{mode: cfg.Mode, mosaicCells: cfg.MosaicCells, blurKernel: cfg.BlurKernel},
		hold:   holder{hold: max(cfg.Hold, 0), grow: cfg.HoldGrow},
		reqs:   make(chan *request),
		idle:   make(chan struct{}, max(1, deps.Parallel)),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		warned: map[string]int{},
	}
	s.phase = time.Duration(math.Mod(math.Abs(deps.SweepPhase), 1) * float64(cfg.SweepInterval))
	s.m.ready.Set(0)
	s.running.Store(int32(cap(s.idle)))
	for range cap(s.idle) {
		s.idle <- struct{}{}
		go s.worker()
	}
	return s, nil
}

// Ready reports whether the detector has answered at least once.
func (s *Stage) Ready() bool { return s.ready.Load() }

// WarmUp runs the detector once on a blank frame and waits for it, without
// the per-frame deadline, so that a batch job does not fail its first frames
// closed while the model initialises. Live sources need not call it: until
// the detector has answered, their frames are obscured whole.
func (s *Stage) WarmUp(ctx context.Context, width, height int) error {
	img := Image{Width: width, Height: height, Pix: make([]byte, width*height*3)}
	r := &request{img: img, ctx: ctx, copied: make(chan struct{}), res: make(chan result, 1)}
	select {
	case <-s.idle:
	case <-s.done:
		return errors.New("blur: stage closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case s.reqs <- r:
	case <-s.done:
		s.idle <- struct{}{}
		return errors.New("blur: stage closed")
	}
	select {
	case res := <-r.res:
		if res.err != nil {
			return fmt.Errorf("blur: warm-up of %s: %w", s.det.Name(), res.err)
		}
		s.markReady()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Stage) markReady() {
	if !s.ready.Swap(true) {
		s.m.ready.Set(1)
		s.log.Info("detector ready")
	}
}

// Obscure takes ownership of raw (its Pix is nil afterwards) and returns the
// obscured frame. It returns ErrDropped for a frame that failed closed under
// on_failure: drop, and an error for a frame whose buffer does not match its
// size (which is then discarded).
func (s *Stage) Obscure(ctx context.Context, raw *frame.Raw) (*Frame, error) {
	return s.Finish(s.Begin(ctx, raw))
}

// Pending is a frame whose search Begin started and Finish ends. It holds
// raw pixels: only this package sees inside.
type Pending struct {
	raw    *frame.Raw
	pix    []byte
	err    error // the frame was invalid
	start  time.Time
	dctx   context.Context
	cancel context.CancelFunc
	full   *request // full search: the whole frame's detection, started
	reason string   // why it could not be started
}

// Ahead is how many frames a caller may Begin before it Finishes the
// oldest. In full search each frame's detection stands alone, so a file
// job keeps every worker busy with the frames after the one being
// obscured; in region search a frame's crops depend on the answers for
// the frame before (the faces held and moving), so frames go one at a
// time and their crops side by side instead.
func (s *Stage) Ahead() int {
	if s.cfg.Search == SearchFull {
		return cap(s.idle)
	}
	return 1
}

// Begin takes ownership of raw (its Pix is nil afterwards) and, in full
// search, starts its detection. Every Pending must be Finished, in the
// order begun.
func (s *Stage) Begin(ctx context.Context, raw *frame.Raw) *Pending {
	p := &Pending{raw: raw}
	if err := raw.Validate(); err != nil {
		if raw != nil {
			raw.Pix = nil
		}
		p.err = err
		return p
	}
	p.pix, raw.Pix = raw.Pix, nil
	p.start = time.Now()
	p.dctx, p.cancel = context.WithTimeout(ctx, s.cfg.Deadline)
	if s.cfg.Search == SearchFull {
		p.full, p.reason = s.start(p.dctx, Image{Width: raw.Width, Height: raw.Height, Pix: p.pix})
	}
	return p
}

// Finish waits for p's search and returns the obscured frame, as Obscure.
func (s *Stage) Finish(p *Pending) (*Frame, error) {
	if p.err != nil {
		s.m.frames.invalid.Inc()
		return nil, p.err
	}
	raw, pix := p.raw, p.pix
	p.pix = nil
	w, h := raw.Width, raw.Height
	if size := image.Pt(w, h); size != s.size {
		s.hold.rescale(s.size, size)
		s.size = size
	}
	dets, reason, lent := []Detection(nil), p.reason, p.full
	switch {
	case reason != "":
	case p.full != nil:
		if dets, reason = s.answer(p.dctx, p.full, w, h); reason == "" {
			s.m.searches.full.Inc()
		}
	default:
		dets, reason, lent = s.search(p.dctx, Image{Width: w, Height: h, Pix: pix}, raw.PTS)
	}
	p.cancel()
	pix = takeBack(lent, pix)
	s.m.detectSeconds.Observe(time.Since(p.start).Seconds())

	start := time.Now()
	out := &Frame{meta: raw.Meta, width: w, height: h, pix: pix}
	if reason != "" {
		s.m.failClosed[reason].Inc()
		s.warnFailClosed(reason, raw.Seq)
		if s.cfg.OnFailure == "drop" {
			clear(pix)
			s.m.frames.dropped.Inc()
			return nil, ErrDropped
		}
		s.ob.whole(pix, w, h)
		out.failClosed = reason
		s.m.frames.failClosed.Inc()
	} else {
		boxes := make([]image.Rectangle, 0, len(dets))
		for _, d := range dets {
			boxes = append(boxes, enlarge(d.Box, s.cfg.Margin))
		}
		regions := s.hold.update(boxes, raw.PTS)
		for _, r := range regions {
			s.ob.region(pix, w, h, r)
		}
		out.faces = len(regions)
		out.detected = len(dets)
		s.m.faces.Add(float64(len(dets)))
		s.m.frames.obscured.Inc()
	}
	s.m.obscureSeconds.Observe(time.Since(start).Seconds())
	return out, nil
}

// detect asks a worker for the faces of img and returns them, or the
// reason it could not vouch for the frame, and the request img's pixels
// were lent to (nil if none was sent), for takeBack.
func (s *Stage) detect(dctx context.Context, img Image) ([]Detection, string, *request) {
	r, reason := s.start(dctx, img)
	if reason != "" {
		return nil, reason, nil
	}
	dets, reason := s.answer(dctx, r, img.Width, img.Height)
	return dets, reason, r
}

// takeBack returns the frame's pixels for Finish to obscure, after a
// whole-frame search r (nil: none) that was lent them: pix itself once
// r's detector has returned, else a copy, and pix is then the worker's to
// put away when its detector returns (a hung detector keeps it). The copy
// is made before pix is given up, so that the worker cannot recycle pix
// (to a decoder, which writes another raw picture into it) under it.
func takeBack(r *request, pix []byte) []byte {
	if r == nil || r.lent.Load() == lentDone {
		return pix
	}
	dst := frame.Bytes(len(pix))
	copy(dst, pix)
	if r.lent.CompareAndSwap(lentOut, lentAbandoned) {
		return dst
	}
	frame.Recycle(dst) // the detector returned meanwhile
	return pix
}

// start hands the whole of img to a free worker, or says why it cannot:
// none is free (busy), or the stage is closed.
func (s *Stage) start(dctx context.Context, img Image) (*request, string) {
	if !s.take() {
		return nil, s.notReady(ReasonBusy)
	}
	return s.send(dctx, img, image.Rectangle{})
}

// take takes a free worker's token, without waiting. None is free while
// every worker is busy: with this frame's other searches, or still stuck
// on an older frame's.
func (s *Stage) take() bool {
	select {
	case <-s.idle:
		return true
	default:
		return false
	}
}

// send hands the part rect of img (all of it if rect is empty) to a
// worker, whose token the caller took, and returns once the worker has
// copied a crop's pixels (from then on the frame can be obscured even if
// the detector hangs) or taken the whole frame, lent (takeBack).
func (s *Stage) send(dctx context.Context, img Image, rect image.Rectangle) (*request, string) {
	r := &request{img: img, rect: rect, ctx: dctx, copied: make(chan struct{}), res: make(chan result, 1)}
	select {
	case s.reqs <- r:
	case <-s.done: // closed: no detector to ask
		s.idle <- struct{}{}
		return nil, s.notReady(ReasonError)
	}
	<-r.copied
	return r, ""
}

// answer waits for r's answer, for an image of w x h.
func (s *Stage) answer(dctx context.Context, r *request, w, h int) ([]Detection, string) {
	select {
	case res := <-r.res:
		switch {
		case res.pan:
			s.log.Error("detector panicked", "err", res.err)
			return nil, s.notReady(ReasonPanic)
		case res.err != nil:
			return nil, s.notReady(ReasonError)
		}
		if !validDetections(res.dets, w, h) {
			return nil, s.notReady(ReasonInvalid)
		}
		s.markReady()
		return res.dets, ""
	case <-dctx.Done():
		return nil, s.notReady(ReasonDeadline)
	}
}

func (s *Stage) notReady(reason string) string {
	if !s.ready.Load() {
		return ReasonWarmup
	}
	return reason
}

// validDetections rejects answers that no working detector gives: boxes
// that are inverted, empty, wholly outside the frame, absurdly large, or
// scored outside [0, 1]. One bad box discredits the whole answer.
func validDetections(dets []Detection, w, h int) bool {
	frameRect := image.Rect(0, 0, w, h)
	for _, d := range dets {
		b := d.Box
		if b.Min.X >= b.Max.X || b.Min.Y >= b.Max.Y {
			return false
		}
		if !b.Overlaps(frameRect) {
			return false
		}
		if b.Dx() > 4*w || b.Dy() > 4*h {
			return false
		}
		sc := float64(d.Score)
		if math.IsNaN(sc) || sc < 0 || sc > 1 {
			return false
		}
	}
	return true
}

// keptCopy is the largest copy a worker keeps for the next request: a
// region search crop up to 448 px. A 640-px crop is copied into one of
// the decoders' picture buffers (frame.Bytes), which goes back among them
// after: eight cameras with four workers each would otherwise keep 32
// large buffers for crops that are rare. (A whole frame is not copied:
// see request.lent.)
const keptCopy = 448 * 448 * 3

func (s *Stage) worker() {
	defer func() {
		if s.running.Add(-1) == 0 {
			close(s.done)
		}
	}()
	buf := []byte(nil)
	for {
		select {
		case <-s.stop:
			return
		case r := <-s.reqs:
			var res result
			if r.rect.Empty() {
				res = s.searchLent(r)
			} else {
				res, buf = s.searchCopy(r, buf)
			}
			// The token goes back before the answer, so that whoever reads
			// the answer finds the worker free.
			s.idle <- struct{}{}
			r.res <- res
		}
	}
}

// searchLent runs the detector on a whole frame's own pixels (see
// request.lent), and puts them away if the frame was given up meanwhile.
func (s *Stage) searchLent(r *request) result {
	close(r.copied)
	res := s.call(r.ctx, r.img)
	if !r.lent.CompareAndSwap(lentOut, lentDone) {
		// Its frame was given up (takeBack copied it): the pixels are raw
		// and no one else will read them.
		frame.Recycle(r.img.Pix)
	}
	return res
}

// searchCopy runs the detector on a copy of a crop, in buf (kept for the
// next crop if small enough, keptCopy) or in a decoder's buffer; it
// returns the answer and the buffer to keep.
func (s *Stage) searchCopy(r *request, buf []byte) (result, []byte) {
	img := Image{Width: r.rect.Dx(), Height: r.rect.Dy()}
	n := img.Width * img.Height * 3
	keep := n <= keptCopy
	switch {
	case !keep:
		buf = frame.Bytes(n)
	case cap(buf) < n:
		buf = make([]byte, n)
	}
	buf = buf[:n]
	cropInto(buf, r.img, r.rect)
	close(r.copied)
	img.Pix = buf
	res := s.call(r.ctx, img)
	if !keep {
		frame.Recycle(buf) // raw pixels, back among the decoders' buffers
		return res, nil
	}
	clear(buf) // the copy held raw pixels: none outlives its frame
	return res, buf
}

func (s *Stage) call(ctx context.Context, img Image) (res result) {
	defer func() {
		if p := recover(); p != nil {
			res = result{err: fmt.Errorf("panic: %v", p), pan: true}
		}
	}()
	dets, err := s.det.Detect(ctx, img)
	return result{dets: dets, err: err}
}

// warnFailClosed logs fail-closed frames at most once a second per stage,
// with how many there were of each reason since the last line.
func (s *Stage) warnFailClosed(reason string, seq uint64) {
	s.warned[reason]++
	if time.Since(s.lastWarn) < time.Second {
		return
	}
	s.lastWarn = time.Now()
	args := []any{"last_seq", seq}
	for _, r := range reasons {
		if n := s.warned[r]; n > 0 {
			args = append(args, r, n)
		}
	}
	clear(s.warned)
	s.log.Warn("frames failed closed: obscured whole", args...)
}

// Close stops the detector worker and waits for it, at most until ctx
// ends (a detector stuck in native code cannot be interrupted). Safe to
// call twice.
func (s *Stage) Close(ctx context.Context) error {
	s.closing.Do(func() { close(s.stop) })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("blur: detector %s did not stop: %w", s.det.Name(), ctx.Err())
	}
}
