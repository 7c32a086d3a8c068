package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/pipeline/config"
)

// cameraRun is one run of a camera.
type cameraRun struct {
	cancel  context.CancelFunc
	done    chan struct{}
	halting atomic.Bool // told to stop by the runner
}

func (r *cameraRun) halt() {
	r.halting.Store(true)
	r.cancel()
}

// live: running and not told to stop.
func (r *cameraRun) live() bool {
	select {
	case <-r.done:
		return false
	default:
		return !r.halting.Load()
	}
}

// runCameras runs the service's cameras until ctx ends, one run group for
// all of them:
//   - without placement, every camera, until each has ended (files played
//     once) or one fails;
//   - with placement, the cameras the site's group gives this box: a
//     camera given is started, one taken away is stopped at once (its
//     frames drained, its last count window flushed);
//   - a camera whose lines or zones change (the console's editor) is
//     stopped and started again with them.
//
// Each start after a camera's first is built afresh: a new counter, so a
// new epoch, whose events never collide with an earlier run's or another
// box's. It begins once the camera's previous run here has drained. A
// camera that fails stops the box; with placement, the site's other boxes
// then take its cameras.
func (s *Service) runCameras(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var placerDone chan error // nil without placement: never ready
	if s.placer != nil {
		placerDone = make(chan error, 1)
		go func() { placerDone <- s.placer.Run(ctx) }()
	}
	var wg sync.WaitGroup
	runs := map[string]*cameraRun{}
	var errsMu sync.Mutex
	var errs []error // of runs that failed, or failed as the service stopped
	failed := make(chan struct{}, 1)
	ended := make(chan struct{}, 1)
	start := func(id string, built *Camera) {
		prev := runs[id]
		rctx, stop := context.WithCancel(ctx)
		r := &cameraRun{cancel: stop, done: make(chan struct{})}
		runs[id] = r
		wg.Go(func() {
			defer func() {
				stop()
				close(r.done)
				select {
				case ended <- struct{}{}:
				default:
				}
			}()
			if prev != nil {
				<-prev.done
			}
			c, err := built, error(nil)
			if c == nil {
				if c, err = s.newCamera(id); err == nil {
					s.camsMu.Lock()
					s.cams = append(s.cams, c)
					s.camsMu.Unlock()
				}
			}
			if err == nil {
				s.meter.started(id)
				err = c.Run(rctx)
				s.meter.stopped(id)
			}
			switch {
			case err == nil:
			case r.halting.Load() && ctx.Err() == nil:
				// Moved away or restarted while the service goes on: what
				// failed as it stopped is logged, and the camera goes on
				// elsewhere or anew.
				s.log.Error("camera stopped with an error", "camera", id, "err", err)
			default:
				errsMu.Lock()
				errs = append(errs, fmt.Errorf("camera %s: %w", id, err))
				errsMu.Unlock()
				select {
				case failed <- struct{}{}:
				default:
				}
			}
		})
	}
	if s.placer == nil {
		for _, c := range s.Cameras() {
			start(c.ID(), c)
		}
	}
	var err error
loop:
	for {
		select {
		case want := <-s.want:
			for id, r := range runs {
				if !slices.Contains(want, id) {
					r.halt()
				}
			}
			for _, id := range want {
				if r, ok := runs[id]; !ok || !r.live() {
					start(id, nil)
				}
			}
			s.log.Info("serving the cameras placed on this box", "component", "placement", "cameras", want)
		case id := <-s.reconf:
			if r, ok := runs[id]; ok && r.live() {
				r.halt()
				start(id, nil)
				s.log.Info("camera restarted with its new lines and zones", "camera", id)
			}
		case <-ended:
			if s.placer != nil {
				continue
			}
			if !slices.ContainsFunc(slices.Collect(maps.Values(runs)), (*cameraRun).live) {
				break loop // every camera's source has ended
			}
		case err = <-placerDone:
			placerDone <- nil // read again below
			if err != nil {
				s.log.Error("placement stopped", "component", "placement", "err", err)
			}
			break loop
		case <-failed:
			errsMu.Lock()
			s.log.Error("camera failed; stopping", "err", errs[0])
			errsMu.Unlock()
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	cancel()
	for _, r := range runs {
		r.halt()
	}
	wg.Wait()
	if placerDone != nil {
		err = errors.Join(err, <-placerDone)
	}
	return errors.Join(append([]error{err}, errs...)...)
}

// setSlot gives a camera its new configuration for its next run.
func (s *Service) setSlot(cam config.Camera) {
	s.slotsMu.Lock()
	defer s.slotsMu.Unlock()
	sl := s.slots[cam.ID]
	sl.cam = cam
	if sl.people == nil && s.people != nil && cam.Counted() && cam.Counting.Method == counter.MethodDetector {
		sl.people = s.eng.LowFor(cam.ID)
	}
	s.slots[cam.ID] = sl
}
