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
	wait    *prometheus.HistogramVec
	infer   *prometheus.HistogramVec
	expired *prometheus.CounterVec
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
	}
	for _, c := range []prometheus.Collector{m.wait, m.infer, m.expired} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Engine runs one detector for many cameras.
type Engine struct {
	lanes []blur.Detector
	m     *Metrics
	log   *slog.Logger

	mu      sync.Mutex
	slots   []*slot // in registration order; the workers go round them
	next    int     // where the round-robin resumes
	stopped bool
	wake    chan struct{}
}

type slot struct {
	camera  string
	pending []*request // oldest first
	wait    prometheus.Observer
	infer   prometheus.Observer
	expired prometheus.Counter
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

// Run serves requests until ctx ends, a worker per lane; then every
// waiting request is answered with ErrStopped, and so is every later one.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, det := range e.lanes {
		wg.Go(func() { e.work(ctx, det) })
	}
	wg.Wait()
	e.mu.Lock()
	e.stopped = true
	for _, s := range e.slots {
		for _, r := range s.pending {
			r.done <- result{err: ErrStopped}
		}
		s.pending = nil
	}
	e.mu.Unlock()
	return nil
}

func (e *Engine) work(ctx context.Context, det blur.Detector) {
	for {
		r, s := e.take()
		if r == nil {
			select {
			case <-e.wake:
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
		dets, err := e.call(det, r)
		s.infer.Observe(time.Since(start).Seconds())
		r.done <- result{dets: dets, err: err}
	}
}

// take removes the next pending request, the oldest of the next camera
// round that has one. When another is still pending it wakes another
// worker for it: a request's wake-up may have been absorbed while the
// workers were all busy.
func (e *Engine) take() (*request, *slot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var r *request
	var s *slot
	more := false
	for i := range e.slots {
		c := e.slots[(e.next+i)%len(e.slots)]
		if len(c.pending) == 0 {
			continue
		}
		if r != nil {
			more = true
			break
		}
		r, s = c.pending[0], c
		c.pending[0] = nil
		c.pending = c.pending[1:]
		more = len(c.pending) > 0
		e.next = (e.next + i + 1) % len(e.slots)
		if more {
			break
		}
	}
	if more {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
	return r, s
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

func (h *handle) Name() string { return h.e.lanes[0].Name() }

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
