package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline"
	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/counts/footfall"
	"github.com/veilproject/veil/pipeline/output/sink"
)

const anonymizeUsage = `usage: veil anonymize [flags] IN OUT

Obscures every face in IN and writes OUT. IN and OUT are both images (.jpg,
.jpeg, .png) or both videos (.mp4, .avi, .mkv, .mov, .m4v, .webm). A video
keeps its size, frame rate and frame count; audio is dropped. OUT appears
only once it is complete.

flags:
`

func cmdAnonymize(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	cfg := flagDefaults()
	fs := newFlagSet("anonymize", stderr, anonymizeUsage)
	var of obscureFlags
	// A batch job has no frame budget: wait long for the detector rather
	// than obscuring whole frames that merely took a while.
	of.register(fs, &cfg, 30*time.Second)
	quiet := fs.Bool("quiet", false, "no progress output")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usageError{errors.New("want IN and OUT")}
	}
	if err := of.validate(); err != nil {
		return err
	}
	in, out := fs.Arg(0), fs.Arg(1)
	inKind, outKind := ingest.KindOf(in), ingest.KindOf(out)
	if inKind == ingest.KindUnsupported {
		return fmt.Errorf("input %s: unsupported file type (want .jpg, .jpeg, .png, .mp4, .avi, .mkv, .mov, .m4v or .webm)", in)
	}
	if _, err := os.Stat(in); err != nil {
		return fmt.Errorf("input %s: %w", in, unwrapPathErr(err))
	}
	if outKind != inKind {
		return fmt.Errorf("output %s: input is %s, so output must be too", out, kindName(inKind))
	}
	if abs(in) == abs(out) {
		return fmt.Errorf("output %s: same file as the input", out)
	}
	start := time.Now()
	sum, err := runFileJob(ctx, cfg, fileJob{in: in, out: out, quiet: *quiet}, stderr, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s -> %s: %s\n", in, out, summaryLine(sum, time.Since(start)))
	return nil
}

// fileJob is one run of veil anonymize or veil count over a file.
type fileJob struct {
	in, out    string // out is empty for count
	counting   *counter.Config
	onCrossing func(counter.Crossing)
	onEvent    func(footfall.Event) error
	quiet      bool
}

// runFileJob wires a file (or picture) source, its outputs and a detector
// into one camera and runs it to the end.
func runFileJob(ctx context.Context, cfg config.Config, job fileJob, stderr io.Writer, log *slog.Logger) (pipeline.Summary, error) {
	const camera = "file"
	var src pipeline.Source
	var outs []pipeline.Output
	total := 0
	if ingest.KindOf(job.in) == ingest.KindImage {
		src = &ingest.Image{Path: job.in, Camera: camera}
		outs = append(outs, &sink.Image{Path: job.out})
	} else {
		f, err := ingest.NewFile(ctx, job.in, camera, log)
		if err != nil {
			return pipeline.Summary{}, err
		}
		src, total = f, f.Info().Frames
		if job.out != "" {
			info := f.Info()
			v, err := sink.NewVideo(ctx, job.out, sink.VideoOptions{Width: info.Width, Height: info.Height, FrameRate: info.FrameRate})
			if err != nil {
				return pipeline.Summary{}, err
			}
			outs = append(outs, v)
		}
		if !job.quiet {
			outs = append(outs, pipeline.NewProgress(stderr, total))
		}
	}
	det, err := detect.New(cfg.Detector, log)
	if err != nil {
		for _, o := range outs {
			o.Close(canceled())
		}
		return pipeline.Summary{}, err
	}
	defer det.Close()
	reg := pipeline.NewRegistry()
	m, err := pipeline.NewMetrics(reg)
	if err != nil {
		return pipeline.Summary{}, err
	}
	return pipeline.RunJob(ctx, pipeline.CameraConfig{ID: camera, Blur: cfg.Blur, Counting: job.counting},
		pipeline.CameraDeps{Source: src, Detector: det, Outputs: outs, OnCrossing: job.onCrossing, Metrics: m, Logger: log}, job.onEvent)
}

// canceled is an ended context: closing an output with it abandons it.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func summaryLine(s pipeline.Summary, elapsed time.Duration) string {
	fps := 0.0
	if elapsed > 0 {
		fps = float64(s.Frames) / elapsed.Seconds()
	}
	return fmt.Sprintf("%d frames in %s (%.1f fps), %d faces detected, %d faces obscured, %d fail-closed frames obscured whole, %d dropped",
		s.Frames, elapsed.Round(time.Millisecond), fps, s.Detected, s.Faces, s.FailClosed, s.Dropped)
}

func kindName(k ingest.Kind) string {
	if k == ingest.KindImage {
		return "an image"
	}
	return "a video"
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
