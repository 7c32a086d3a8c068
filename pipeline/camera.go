package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/queue"
)

// Queue sizes. Before blur a live camera keeps at most 2 frames (the
// newest; older ones are dropped and counted), so what is obscured is
// never more than two frame intervals behind the camera. After blur each
// consumer gets 4 frames of slack (about a quarter of a second at 15 fps,
// more than a recorder's segment change takes; measured:
// docs/benchmarks/figures-from-code-comments.md) before a live camera
// drops its oldest frame for that consumer alone. At 1280x720 a frame is
// 2.7 MB, so these queues hold at most ten frames, 27 MB, per camera with
// a recorder and a counter.
const (
	rawQueue      = 2
	consumerQueue = 4
	jobQueue      = 4 // a file job: every queue blocks, nothing is dropped
)

// CameraConfig is what one camera's pipeline does.
type CameraConfig struct {
	// ID names the camera in metrics, logs and events.
	ID string
	// Site names the box's office in count events (empty: none).
	Site string
	// Blur is the obscuring policy.
	Blur blur.Config
	// Counting, if not nil, counts people on the obscured frames.
	Counting *counter.Config
	// Live is for cameras that do not wait: every queue drops its oldest
	// frame when its stage is behind (counted by stage and reason). A
	// camera that is not live (a file read as fast as it decodes) makes
	// every stage wait instead, and loses nothing.
	Live bool
	// Job marks a batch job over a file (veil anonymize, veil count): the
	// detector is warmed up on the first frame's size instead of obscuring
	// frames whole while it loads, and if the job is cancelled or fails the
	// outputs are abandoned, not finished, so no partial result is left.
	Job bool
	// Drain bounds shutdown: once ctx ends, the frames already decoded are
	// still obscured, counted and written, and the outputs closed, within
	// this time. It defaults to 10s.
	Drain time.Duration
	// SweepPhase places this camera's whole-frame sweeps in the sweep
	// interval (blur.Deps.SweepPhase): a service spreads its cameras.
	SweepPhase float64
}

// CameraDeps are the parts a camera is built from.
type CameraDeps struct {
	// Source decodes the camera. Required.
	Source Source
	// Detector finds faces for this camera's blur stage. Required. The
	// caller closes it after Run.
	Detector blur.Detector
	// Parallel is how many calls Detector takes at once (the lanes of the
	// engine behind it; 1 if unset): the blur stage searches a frame's
	// crops side by side, and a file job in full search detects frames
	// ahead.
	Parallel int
	// Outputs take every obscured frame, each from its own queue, so none
	// waits for another or for the counter.
	Outputs []Output
	// Events receives count events; required with Counting. Its policy is
	// queue.Block: events are never dropped.
	Events *queue.Queue[footfall.Event]
	// OnCrossing and OnOccupancy, if set, are told of each crossing and
	// each zone's occupancy as measured (for evaluation).
	OnCrossing  func(counter.Crossing)
	OnOccupancy func(counter.Occupancy)
	// People finds people for the counter's detector method: the shared
	// engine's low-priority network (engine.LowFor), in tiles.
	People blur.Detector
	// Metrics is shared by the process. Required.
	Metrics *Metrics
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Summary is what a camera has done so far.
type Summary struct {
	Camera     string
	Frames     int // obscured frames delivered to the outputs
	Detected   int // faces the detector found, summed over frames
	Faces      int // face regions obscured (detections and held boxes)
	FailClosed int // frames obscured whole (or dropped) because the detector could not vouch for them
	Dropped    int // frames decoded but not delivered: dropped before blur, or by on_failure: drop
	// Crossings per line, since the camera started.
	Crossings []footfall.LineCount
}

// Camera is one camera's pipeline: source → bounded queue → blur → the
// counter and every output side by side.
type Camera struct {
	cfg  CameraConfig
	deps CameraDeps
	log  *slog.Logger
	cnt  *counter.Counter

	mu  sync.Mutex
	sum Summary
}

// NewCamera checks the configuration; Run builds the stages.
func NewCamera(cfg CameraConfig, deps CameraDeps) (*Camera, error) {
	if cfg.Drain == 0 {
		cfg.Drain = 10 * time.Second
	}
	switch {
	case deps.Source == nil:
		return nil, fmt.Errorf("camera %s: no source", cfg.ID)
	case deps.Detector == nil:
		return nil, fmt.Errorf("camera %s: no detector", cfg.ID)
	case deps.Metrics == nil:
		return nil, fmt.Errorf("camera %s: no metrics", cfg.ID)
	case cfg.Counting != nil && deps.Events == nil:
		return nil, fmt.Errorf("camera %s: counting needs an events queue", cfg.ID)
	}
	b := cfg.Blur
	b.Defaults()
	if err := b.Validate("blur"); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Camera{cfg: cfg, deps: deps, log: deps.Logger.With("component", "pipeline", "camera", cfg.ID), sum: Summary{Camera: cfg.ID}}
	if cfg.Counting != nil {
		cd := counter.Deps{Camera: cfg.ID, Site: cfg.Site, Metrics: deps.Metrics.Counter, Logger: deps.Logger, OnCrossing: deps.OnCrossing, OnOccupancy: deps.OnOccupancy}
		if deps.People != nil {
			cd.People = &detect.Tiles{Det: deps.People}
		}
		if cfg.Live {
			// A live camera's counter does not wait long behind faces: a
			// detection skipped lets the tracks coast to the next.
			cd.DetectTimeout = time.Second
		}
		cnt, err := counter.New(*cfg.Counting, cd)
		if err != nil {
			return nil, err
		}
		c.cnt = cnt
	}
	return c, nil
}

// ID is the camera's id.
func (c *Camera) ID() string { return c.cfg.ID }

// Summary is a snapshot of what the camera has done.
func (c *Camera) Summary() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sum
	if c.cnt != nil {
		s.Crossings = c.cnt.Totals()
	}
	return s
}

// Run runs the camera until its source ends or ctx ends, then drains (see
// CameraConfig.Drain) and returns. It returns the first error of the
// source, an output or the counter; a context cancellation is a clean stop.
func (c *Camera) Run(ctx context.Context) error {
	stage, err := blur.New(c.cfg.Blur, blur.Deps{Camera: c.cfg.ID, Detector: c.deps.Detector, Metrics: c.deps.Metrics.Blur, Logger: c.deps.Logger, SweepPhase: c.cfg.SweepPhase, Parallel: c.deps.Parallel})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), c.cfg.Drain)
		defer cancel()
		if err := stage.Close(cctx); err != nil {
			c.log.Error("blur stage did not stop", "err", err)
		}
	}()

	rawSize, outSize, policy := jobQueue, jobQueue, queue.Block
	if c.cfg.Live {
		rawSize, outSize, policy = rawQueue, consumerQueue, queue.DropOldest
	}
	raws := queue.New[*frame.Raw](rawSize, policy, onDrop[*frame.Raw](c, "blur"))

	// The source stops when ctx ends or a stage fails; every later stage
	// runs on drain, which outlives that by c.cfg.Drain, so frames already
	// decoded are still obscured and written.
	srcCtx, stopSource := context.WithCancel(ctx)
	defer stopSource()
	drain, stopDrain := afterDone(srcCtx, c.cfg.Drain)
	defer stopDrain()

	var g errgroup.Group
	fail := func(err error) error {
		if err != nil && !errors.Is(err, context.Canceled) {
			stopSource()
			return err
		}
		return nil
	}
	srcDone := make(chan error, 1)
	g.Go(func() error {
		err := c.deps.Source.Run(srcCtx, raws)
		srcDone <- err
		return fail(err)
	})
	// abandon is decided when the source has ended: a job's outputs are
	// kept only if all of its input went through.
	var abandon bool
	var consumers []*queue.Queue[*blur.Frame]
	closed := make(chan struct{}) // consumer queues closed; abandon is set
	if c.cnt != nil {
		q := queue.New[*blur.Frame](outSize, policy, onDrop[*blur.Frame](c, "counter"))
		consumers = append(consumers, q)
		g.Go(func() error {
			err := c.cnt.Run(drain, srcCtx, q, c.deps.Events)
			for f := range q.C() { // after a failure, keep blur from waiting on this queue
				f.Done()
			}
			return fail(err)
		})
	}
	for _, out := range c.deps.Outputs {
		q := queue.New[*blur.Frame](outSize, policy, onDrop[*blur.Frame](c, out.Name()))
		consumers = append(consumers, q)
		latency := c.deps.Metrics.latency.WithLabelValues(c.cfg.ID, out.Name())
		g.Go(func() error {
			var werr error
			for f := range q.C() {
				if werr == nil {
					latency.Observe(time.Since(f.Meta().Captured).Seconds())
					if werr = out.Write(f); werr != nil {
						fail(werr)
					}
				}
				f.Done()
			}
			<-closed
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Drain)
			defer cancel()
			if abandon || werr != nil {
				cancel() // an ended context abandons the output
			}
			return fail(errors.Join(werr, out.Close(cctx)))
		})
	}
	g.Go(func() error {
		err := c.obscure(drain, stage, raws, consumers)
		srcErr := <-srcDone
		abandon = c.cfg.Job && (srcErr != nil || ctx.Err() != nil || err != nil)
		for _, q := range consumers {
			q.Close()
		}
		close(closed)
		return fail(err)
	})
	return g.Wait()
}

// obscure runs blur on every frame from raws and hands each obscured frame
// to every consumer, in order, until raws is closed and drained or ctx
// ends. Up to stage.Ahead() frames are begun before the oldest is
// finished, but only while more are already waiting: a live camera's
// frame is never held back for the next one to arrive.
func (c *Camera) obscure(ctx context.Context, stage *blur.Stage, raws *queue.Queue[*frame.Raw], consumers []*queue.Queue[*blur.Frame]) error {
	delivered := c.deps.Metrics.delivered.WithLabelValues(c.cfg.ID)
	warm := !c.cfg.Job
	var begun []*blur.Pending
	defer func() {
		for _, p := range begun { // ctx ended: each is still obscured (or failed closed), then let go
			stage.Finish(p)
		}
	}()
	for {
		if len(begun) < stage.Ahead() && (len(begun) == 0 || raws.Len() > 0) {
			raw, ok := raws.Pop(ctx)
			if ok && !warm {
				if err := stage.WarmUp(ctx, raw.Width, raw.Height); err != nil {
					return fmt.Errorf("camera %s: %w", c.cfg.ID, err)
				}
				warm = true
			}
			if ok {
				begun = append(begun, stage.Begin(ctx, raw))
				continue
			}
			if len(begun) == 0 {
				return nil
			}
		}
		p := begun[0]
		begun = begun[1:]
		f, err := stage.Finish(p)
		if err != nil {
			c.mu.Lock()
			c.sum.Dropped++
			c.sum.FailClosed++
			c.mu.Unlock()
			if !errors.Is(err, blur.ErrDropped) {
				c.log.Error("frame discarded", "err", err)
			}
			continue
		}
		c.mu.Lock()
		c.sum.Frames++
		c.sum.Detected += f.Detected()
		c.sum.Faces += f.Faces()
		if f.FailClosed() != "" {
			c.sum.FailClosed++
		}
		c.mu.Unlock()
		delivered.Inc()
		f.Share(len(consumers)) // each consumer's goroutine, or its queue's drop, calls Done
		for _, q := range consumers {
			if err := q.Push(ctx, f); err != nil {
				return nil // shutdown ran out of time
			}
		}
	}
}

// onDrop counts the frames a live queue in front of stage drops, and
// gives a dropped raw frame's buffer back for the next decoded picture.
func onDrop[T any](c *Camera, stage string) func(T) {
	dropped := c.deps.Metrics.dropped.WithLabelValues(c.cfg.ID, stage, DropQueueFull)
	return func(v T) {
		dropped.Inc()
		switch f := any(v).(type) {
		case *frame.Raw:
			f.Release()
		case *blur.Frame:
			f.Done()
		}
		if stage == "blur" {
			c.mu.Lock()
			c.sum.Dropped++
			c.mu.Unlock()
		}
	}
}

// afterDone is a context that ends d after parent ends (or when cancelled).
func afterDone(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		t := time.AfterFunc(d, cancel)
		context.AfterFunc(ctx, func() { t.Stop() })
	})
	return ctx, func() { stop(); cancel() }
}
