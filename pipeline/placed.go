package pipeline

import (
	"context"

	"github.com/veilproject/veil/pipeline/output/live"
	"github.com/veilproject/veil/pipeline/placement"
)

// pausing is a camera's stream as one run's output: the end of the run
// pauses the stream (the segment finished, viewers kept), which lives as
// long as the service (a camera restarted with new lines, or moved back
// to this box, keeps its viewers).
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
