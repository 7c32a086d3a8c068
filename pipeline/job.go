package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/blur/engine"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/output/sink"
	"github.com/veilproject/veil/queue"
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

// FileJob is one run of veil anonymize or veil count: a video file (or a
// picture) as the source of one camera, run to its end.
type FileJob struct {
	// In is a video or a picture.
	In string
	// Out, if set, receives the obscured result, of the same kind as In.
	Out string
	// Counting, if set, counts people; OnCrossing and OnEvent are told of
	// each crossing and count event.
	Counting    *counter.Config
	OnCrossing  func(counter.Crossing)
	OnOccupancy func(counter.Occupancy)
	OnEvent     func(footfall.Event) error
	// Progress, if set, receives a progress bar (videos).
	Progress io.Writer
}

// Run wires the source, the outputs and a detector (cfg.Detector, with
// cfg.Blur) into one camera, runs it and returns its summary. A file is
// searched whole on every frame unless cfg.Blur.Search says otherwise:
// files come from moving and cutting cameras as often as from fixed ones,
// and on such footage region search saves nothing (measured in the
// README).
func (j FileJob) Run(ctx context.Context, cfg config.Config, log *slog.Logger) (Summary, error) {
	const camera = "file"
	var src Source
	var outs []Output
	if ingest.KindOf(j.In) == ingest.KindImage {
		src = &ingest.Image{Path: j.In, Camera: camera}
		outs = append(outs, &sink.Image{Path: j.Out})
	} else {
		f, err := ingest.NewFile(ctx, ingest.FileConfig{Path: j.In, Camera: camera}, ingest.FileDeps{Logger: log})
		if err != nil {
			return Summary{}, err
		}
		src = f
		info := f.Info()
		if j.Out != "" {
			v, err := sink.NewVideo(ctx, j.Out, sink.VideoOptions{Width: info.Width, Height: info.Height, FrameRate: info.FrameRate})
			if err != nil {
				return Summary{}, err
			}
			outs = append(outs, v)
		}
		if j.Progress != nil {
			outs = append(outs, NewProgress(j.Progress, info.Frames))
		}
	}
	dcfg := cfg.Detector
	if dcfg.Lanes == 0 && cfg.Blur.Search == blur.SearchFull {
		// Every frame is searched whole: a lane per core, each with its
		// own whole-frame network, so that the next frames are detected
		// while one is obscured and written (blur.Stage.Ahead).
		dcfg.Lanes, dcfg.LargePerLane = runtime.NumCPU(), true
	}
	det, err := detect.New(dcfg, log)
	if err != nil {
		ended, cancel := context.WithCancel(ctx)
		cancel()
		for _, o := range outs {
			o.Close(ended) // an ended context abandons the output
		}
		return Summary{}, err
	}
	defer det.Close()
	m, err := NewMetrics(NewRegistry())
	if err != nil {
		return Summary{}, err
	}
	lanes := detect.Lanes(det)
	eng, err := engine.New(lanes, m.Engine, log)
	if err != nil {
		return Summary{}, err
	}
	var cams []config.Camera
	if j.Counting != nil {
		cams = []config.Camera{{ID: camera, Counting: *j.Counting}}
	}
	// A file job waits for every answer and loses nothing, so person
	// detection need not be held to a share of the engine.
	people, err := addPeople(eng, dcfg, len(lanes), cams, 1)
	if err != nil {
		return Summary{}, err
	}
	cd := CameraDeps{Source: src, Detector: eng.For(camera), Parallel: len(lanes), Outputs: outs, OnCrossing: j.OnCrossing, OnOccupancy: j.OnOccupancy, Metrics: m, Logger: log}
	if people != nil {
		defer people.Close()
		cd.People = eng.LowFor(camera)
	}
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engDone := make(chan struct{})
	go func() { eng.Run(engCtx); close(engDone) }()
	defer func() { stopEngine(); <-engDone }()
	return RunJob(ctx, CameraConfig{ID: camera, Blur: cfg.Blur, Counting: j.Counting}, cd, j.OnEvent)
}

// Line is the summary as one line, for a job that took elapsed.
func (s Summary) Line(elapsed time.Duration) string {
	fps := 0.0
	if elapsed > 0 {
		fps = float64(s.Frames) / elapsed.Seconds()
	}
	return fmt.Sprintf("%d frames in %s (%.1f fps), %d faces detected, %d faces obscured, %d fail-closed frames obscured whole, %d dropped",
		s.Frames, elapsed.Round(time.Millisecond), fps, s.Detected, s.Faces, s.FailClosed, s.Dropped)
}
