package pipeline

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/veilproject/veil/pipeline/counts/footfall"
	"github.com/veilproject/veil/pipeline/queue"
)

// RunJob runs one camera over a file to its end, as veil anonymize and
// veil count do: cfg.Job is set, so nothing is dropped and an unfinished
// job leaves no output. With cfg.Counting, every count event is passed to
// onEvent (which may be nil) in order. It returns the camera's summary.
func RunJob(ctx context.Context, cfg CameraConfig, deps CameraDeps, onEvent func(footfall.Event) error) (Summary, error) {
	cfg.Job, cfg.Live = true, false
	var events *queue.Queue[footfall.Event]
	if cfg.Counting != nil {
		events = queue.New[footfall.Event](64, queue.Block, nil)
		deps.Events = events
	}
	cam, err := NewCamera(cfg, deps)
	if err != nil {
		return Summary{}, err
	}
	var g errgroup.Group
	g.Go(func() error {
		if events != nil {
			defer events.Close()
		}
		return cam.Run(ctx)
	})
	if events != nil {
		g.Go(func() error {
			var err error
			for e := range events.C() {
				if err == nil && onEvent != nil {
					err = onEvent(e) // keep draining so the counter never waits
				}
			}
			return err
		})
	}
	err = g.Wait()
	return cam.Summary(), err
}
