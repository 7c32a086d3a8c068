package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/veilproject/veil/pipeline/output/live"
	"github.com/veilproject/veil/pipeline/placement"
)

// pausing is a placed camera's stream as one run's output: the end of the
// run pauses the stream (the segment finished, viewers kept), which lives
// as long as the service.
type pausing struct{ *live.Stream }

func (p pausing) Close(ctx context.Context) error { return p.Pause(ctx) }

var _ Output = pausing{}

// newPlacer joins this box to its site's placement group (config
// placement): every box of the site has the same cameras.
func (s *Service) newPlacer() (err error) {
	pc := s.cfg.Placement
	var cams []placement.Camera
	for _, c := range s.cfg.Cameras {
		cams = append(cams, placement.Camera{ID: c.ID, Cost: c.Cost})
	}
	s.want = make(chan []string, 1)
	s.meter = newCostMeter(s.reg)
	s.placer, err = placement.New(placement.Config{Kafka: s.cfg.Kafka, Site: s.cfg.Site, Box: pc.Box, Capacity: pc.Capacity, Console: pc.Console,
		Cameras: cams, SessionTimeout: pc.SessionTimeout, Handover: pc.Handover},
		placement.Deps{Logger: s.log, Measured: s.meter.measured, Registerer: s.reg, Serve: func(ids []string) {
			// Latest wins: only the newest list matters. One writer (the
			// placer calls Serve one at a time) and one reader, so after
			// the drain the send cannot block.
			select {
			case <-s.want:
			default:
			}
			s.want <- ids
		}})
	return err
}

// placedRun is one run of a placed camera.
type placedRun struct {
	cancel  context.CancelFunc
	done    chan struct{}
	halting bool // told to stop (the loop's own mark)
}

func (r *placedRun) halt() {
	r.halting = true
	r.cancel()
}

// live: running and not told to stop.
func (r *placedRun) live() bool {
	select {
	case <-r.done:
		return false
	default:
		return !r.halting
	}
}

// runPlaced serves the cameras the site's group gives this box until ctx
// ends. A camera given is built afresh (a new counter, so a new epoch:
// its events never collide with another box's run of it) and started once
// its previous run here, if any, has drained; a camera taken away is
// stopped at once, its frames drained and its last count window flushed.
// A camera that fails stops the box, as without placement; the site's
// other boxes then take its cameras.
func (s *Service) runPlaced(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	placerDone := make(chan error, 1)
	go func() { placerDone <- s.placer.Run(ctx) }()
	var wg sync.WaitGroup
	runs := map[string]*placedRun{}
	failed := make(chan error, 1)
	start := func(id string) {
		prev := runs[id]
		rctx, stop := context.WithCancel(ctx)
		r := &placedRun{cancel: stop, done: make(chan struct{})}
		runs[id] = r
		wg.Go(func() {
			defer close(r.done)
			defer stop()
			if prev != nil {
				<-prev.done
			}
			c, err := s.newCamera(id)
			if err == nil {
				s.camsMu.Lock()
				s.cams = append(s.cams, c)
				s.camsMu.Unlock()
				s.meter.started(id)
				err = c.Run(rctx)
				s.meter.stopped(id)
			}
			if err != nil && rctx.Err() == nil {
				select {
				case failed <- fmt.Errorf("camera %s: %w", id, err):
				default:
				}
			}
		})
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
					start(id)
				}
			}
			s.log.Info("serving the cameras placed on this box", "component", "placement", "cameras", want)
		case err = <-placerDone:
			placerDone <- nil // read again below
			if err != nil {
				s.log.Error("placement stopped", "component", "placement", "err", err)
			}
			break loop
		case err = <-failed:
			s.log.Error("camera failed; leaving the site's group so that another box takes its cameras", "component", "placement", "err", err)
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
	return errors.Join(err, <-placerDone)
}
