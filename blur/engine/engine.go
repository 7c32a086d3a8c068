// Package engine is the one inference engine of a process: a single
// detector (one network in memory, one set of runtime threads) shared by
// every camera, with a scheduler that serves cameras in turn.
//
// Each camera's blur stage asks through its own handle (For), which is a
// blur.Detector. A camera may have several requests in the engine at once
// (the crops of one frame, or the frames a file job detects ahead), queued
// in its own first-in first-out line; the workers take the cameras with a
// request round-robin, one request per turn, so with C cameras waiting
// each gets every C-th inference: one busy camera cannot starve another,
// however many requests it has queued. There is a worker per
// lane of the detector (lanes are inferences that may run at once, each on
// its share of the cores). A request whose deadline (its context) passes
// before a worker reaches it is answered with that error at once and never
// run; the stage then fails the frame closed, as for any detector that did
// not answer in time.
//
// The engine may also run a second network below the faces in priority
// (SetLow: the counter's person detector). A worker takes a low request
// only when no face request is waiting, and an inference is never
// interrupted, so a face request waits for at most one low inference: each
// call should be short (detect.Tiles makes one call per tile). And the low
// network may use only its share of the engine's time (SetLow's share of
// every lane), so that on a CPU where it is slow it does not take the
// cores the faces need: a low request beyond the share waits, and one
// whose deadline passes meanwhile is answered with that error (the
// counter then skips that detection).
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
)

// ErrStopped answers requests made after the engine stopped.
var ErrStopped = errors.New("engine: stopped")

// Metrics are the engine's series, per camera.
type Metrics struct {
	wait     *prometheus.HistogramVec
	infer    *prometheus.HistogramVec
	expired  *prometheus.CounterVec
	lowInfer *prometheus.HistogramVec
}

// NewMetrics registers the engine's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	buckets := prometheus.ExponentialBuckets(0.001, 2, 13)
	m := &Metrics{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "veil_engine_queue_duration_seconds",
			Help: "Time a camera's frame waited for the shared inference engine.", Buckets: buckets}, []string{"camera"}),
		infer: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "veil_engine_inference_duration_seconds",
			Help: "Time the shared engine spent on a camera's frame.", Buckets: buckets}, []string{"camera"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_engine_expired_total",
			Help: "Frames whose deadline passed before the engine reached them (the stage obscured them whole)."}, []string{"camera"}),
		lowInfer: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "veil_engine_people_inference_duration_seconds",
			Help: "Time the shared engine spent on a camera's person detection (one call per tile), below faces in priority.", Buckets: buckets}, []string{"camera"}),
	}
	for _, c := range []prometheus.Collector{m.wait, m.infer, m.expired, m.lowInfer} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Engine runs one detector for many cameras.
type Engine struct {
	lanes []blur.Detector
	low   []blur.Detector // SetLow's, a lane per face lane; nil if none
	m     *Metrics
	log   *slog.Logger

	mu      sync.Mutex
	slots   []*slot // in registration order; the workers go round them
	next    int     // where the round-robin resumes
	lows    []*slot // the low network's, the same way
	nextLow int
	// The low network's time budget: share of every lane's time. debt is
	// how far its inferences are ahead of that allowance (none saved up
	// beyond zero), as of paid.
	share   float64
	debt    time.Duration
	paid    time.Time
	stopped bool
	wake    chan struct{}
}

type slot struct {
	camera  string
	low     bool
	pending []*request // oldest first
	wait    prometheus.Observer
	infer   prometheus.Observer
	expired interface{ Inc() }
}

type request struct {
	ctx     context.Context
	img     blur.Image
	queued  time.Time
	started chan struct{} // closed when the worker takes it
	done    chan result   // the answer, once
}

type result struct {
	dets []blur.Detection
	err  error
}

// New makes an engine around the lanes of one detector (detect.Lanes):
// Detectors that may run at the same time, each called by its own worker
// only. Run starts the workers.
func New(lanes []blur.Detector, m *Metrics, log *slog.Logger) (*Engine, error) {
	if len(lanes) == 0 || slices.Contains(lanes, nil) || m == nil {
		return nil, errors.New("engine: needs a detector and metrics")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{lanes: lanes, m: m, log: log.With("component", "engine", "detector", lanes[0].Name(), "lanes", len(lanes)),
		wake: make(chan struct{}, 1)}, nil
}

// For is camera's handle: a blur.Detector for that camera's stage. Call it
// once per camera, before Run.
func (e *Engine) For(camera string) blur.Detector {
	s := &slot{camera: camera, wait: e.m.wait.WithLabelValues(camera), infer: e.m.infer.WithLabelValues(camera),
		expired: e.m.expired.WithLabelValues(camera)}
	e.mu.Lock()
	e.slots = append(e.slots, s)
	e.mu.Unlock()
	return &handle{e: e, s: s}
}

// SetLow gives the engine a second network, served only while no face
// request waits and within share (0 < share <= 1) of every lane's time:
// lanes of one detector, as many as the face detector's, worker i running
// lane i of each. Call it before Run.
func (e *Engine) SetLow(lanes []blur.Detector, share float64) error {
	if len(lanes) != len(e.lanes) || slices.Contains(lanes, nil) {
		return fmt.Errorf("engine: the low network needs %d lanes, one per face lane; got %d", len(e.lanes), len(lanes))
	}
	if !(share > 0 && share <= 1) {
		return fmt.Errorf("engine: the low network's share %v is outside (0, 1]", share)
	}
	e.low, e.share = lanes, share
	return nil
}

// settle pays the low network's debt down by the allowance accrued since
// it was last settled, and returns how long until it is paid off. e.mu is
// held.
func (e *Engine) settle(now time.Time) time.Duration {
	rate := e.share * float64(len(e.lanes)) // seconds of low inference a second
	if !e.paid.IsZero() {
		e.debt -= time.Duration(float64(now.Sub(e.paid)) * rate)
	}
	e.paid = now
	e.debt = max(e.debt, 0)
	return time.Duration(float64(e.debt) / rate)
}

// LowFor is camera's handle on the low network (SetLow first). Its
// inferences are measured apart from the faces'; the caller measures its
// waits.
func (e *Engine) LowFor(camera string) blur.Detector {
	s := &slot{camera: camera, low: true, wait: noop{}, infer: e.m.lowInfer.WithLabelValues(camera), expired: noop{}}
	e.mu.Lock()
	e.lows = append(e.lows, s)
	e.mu.Unlock()
	return &handle{e: e, s: s}
}

type noop struct{}

func (noop) Observe(float64) {}
func (noop) Inc()            {}

// Run serves requests until ctx ends, a worker per lane; then every
// waiting request is answered with ErrStopped, and so is every later one.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i, det := range e.lanes {
		var low blur.Detector
		if e.low != nil {
			low = e.low[i]
		}
		wg.Go(func() { e.work(ctx, det, low) })
	}
	wg.Wait()
	e.mu.Lock()
	e.stopped = true
	for _, s := range slices.Concat(e.slots, e.lows) {
		for _, r := range s.pending {
			r.done <- result{err: ErrStopped}
		}
		s.pending = nil
	}
	e.mu.Unlock()
	return nil
}

func (e *Engine) work(ctx context.Context, det, low blur.Detector) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		r, s, later := e.take()
		if r == nil {
			var due <-chan time.Time
			if later > 0 { // low requests wait for their budget
				if timer == nil {
					timer = time.NewTimer(later)
				} else {
					timer.Reset(later)
				}
				due = timer.C
			}
			select {
			case <-e.wake:
				continue
			case <-due:
				continue
			case <-ctx.Done():
				return
			}
		}
		if err := r.ctx.Err(); err != nil {
			s.expired.Inc()
			r.done <- result{err: err}
			continue
		}
		close(r.started)
		s.wait.Observe(time.Since(r.queued).Seconds())
		start := time.Now()
		d := det
		if s.low {
			d = low
		}
		dets, err := e.call(d, r)
		took := time.Since(start)
		s.infer.Observe(took.Seconds())
		if s.low {
			e.mu.Lock()
			e.settle(time.Now())
			e.debt += took
			e.mu.Unlock()
		}
		r.done <- result{dets: dets, err: err}
	}
}

// take removes the next pending request: the oldest of the next camera
// round that has a face request, or else, within the low network's
// budget, of the next that has a low one. When another is still pending
// it wakes another worker for it: a request's wake-up may have been
// absorbed while the workers were all busy. With none to take now, later
// is how long until a waiting low request is within budget (0: none
// waits).
func (e *Engine) take() (r *request, s *slot, later time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, s, more := takeFrom(e.slots, &e.next)
	if r == nil {
		if !e.lowPending() {
			return nil, nil, 0
		}
		if later := e.settle(time.Now()); later > 0 {
			return nil, nil, later
		}
		r, s, more = takeFrom(e.lows, &e.nextLow)
	} else if !more {
		more = e.lowPending()
	}
	if more {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
	return r, s, 0
}

// lowPending says whether a low request waits. e.mu is held.
func (e *Engine) lowPending() bool {
	for _, c := range e.lows {
		if len(c.pending) > 0 {
			return true
		}
	}
	return false
}

// takeFrom takes the oldest request of the next slot round from *next
// that has one, and says whether any other is pending.
func takeFrom(slots []*slot, next *int) (r *request, s *slot, more bool) {
	for i := range slots {
		c := slots[(*next+i)%len(slots)]
		if len(c.pending) == 0 {
			continue
		}
		if r != nil {
			return r, s, true
		}
		r, s = c.pending[0], c
		c.pending[0] = nil
		c.pending = c.pending[1:]
		*next = (*next + i + 1) % len(slots)
		if len(c.pending) > 0 {
			return r, s, true
		}
	}
	return r, s, false
}

func (e *Engine) call(det blur.Detector, r *request) (dets []blur.Detection, err error) {
	defer func() {
		if p := recover(); p != nil {
			// The stage reports it as an error and fails the frame closed;
			// the detector stays in service for the next frame.
			e.log.Error("detector panicked", "err", p)
			err = fmt.Errorf("engine: detector panicked: %v", p)
		}
	}()
	return det.Detect(r.ctx, r.img)
}

type handle struct {
	e *Engine
	s *slot
}

func (h *handle) Name() string {
	if h.s.low {
		return h.e.low[0].Name()
	}
	return h.e.lanes[0].Name()
}

// Detect queues img for the engine and waits for the answer. If ctx ends
// first: a request not yet taken is withdrawn and Detect returns at once;
// one being run is waited for, since the engine is reading img.
func (h *handle) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	r := &request{ctx: ctx, img: img, queued: time.Now(), started: make(chan struct{}), done: make(chan result, 1)}
	h.e.mu.Lock()
	if h.e.stopped {
		h.e.mu.Unlock()
		return nil, ErrStopped
	}
	h.s.pending = append(h.s.pending, r)
	h.e.mu.Unlock()
	select {
	case h.e.wake <- struct{}{}:
	default:
	}
	select {
	case res := <-r.done:
		return res.dets, res.err
	case <-ctx.Done():
	}
	h.e.mu.Lock()
	if i := slices.Index(h.s.pending, r); i >= 0 { // not taken: withdraw it
		h.s.pending = slices.Delete(h.s.pending, i, i+1)
		h.e.mu.Unlock()
		h.s.expired.Inc()
		return nil, ctx.Err()
	}
	h.e.mu.Unlock()
	res := <-r.done // taken (or answered meanwhile): the engine may be reading img
	if res.err == nil {
		res.err = ctx.Err()
	}
	return res.dets, res.err
}

var _ blur.Detector = (*handle)(nil)
