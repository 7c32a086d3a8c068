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

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline/frame"
	"github.com/veilproject/veil/pipeline/queue"
	"github.com/veilproject/veil/pipeline/sink"
)

const anonymizeUsage = `usage: veil anonymize [flags] IN OUT

Obscures every face in IN and writes OUT. IN and OUT are both images (.jpg,
.jpeg, .png) or both videos (.mp4, .avi, .mkv, .mov, .m4v, .webm). A video
keeps its size, frame rate and frame count; audio is dropped. OUT appears
only once it is complete.

flags:
`

// summary is what an anonymize run did.
type summary struct {
	Frames     int
	Detected   int // faces the detector found, summed over frames
	Faces      int // face regions obscured (detections and held boxes), summed over frames
	FailClosed int
	Dropped    int
	Elapsed    time.Duration
}

// add counts one obscured frame.
func (s *summary) add(f *blur.Frame) {
	s.Frames++
	s.Detected += f.Detected()
	s.Faces += f.Faces()
	if f.FailClosed() != "" {
		s.FailClosed++
	}
}

func (s summary) String() string {
	fps := 0.0
	if s.Elapsed > 0 {
		fps = float64(s.Frames) / s.Elapsed.Seconds()
	}
	return fmt.Sprintf("%d frames in %s (%.1f fps), %d faces detected, %d faces obscured, %d fail-closed frames obscured whole, %d dropped",
		s.Frames, s.Elapsed.Round(time.Millisecond), fps, s.Detected, s.Faces, s.FailClosed, s.Dropped)
}

func cmdAnonymize(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("anonymize", stderr, anonymizeUsage)
	var of obscureFlags
	// A batch job has no frame budget: wait long for the detector rather
	// than obscuring whole frames that merely took a while.
	of.register(fs, 30*time.Second)
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
	det, err := detect.New(of.det, log)
	if err != nil {
		return err
	}
	defer det.Close()
	metrics, err := blur.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return err
	}
	stage, err := blur.New(of.blur, blur.Deps{Camera: "file", Detector: det, Metrics: metrics, Logger: log})
	if err != nil {
		return err
	}
	defer stage.Close(context.Background())

	var prog io.Writer = stderr
	if *quiet {
		prog = io.Discard
	}
	var sum summary
	if inKind == ingest.KindImage {
		sum, err = anonymizeImage(ctx, stage, in, out)
	} else {
		sum, err = anonymizeVideo(ctx, stage, in, out, prog, log)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s -> %s: %s\n", in, out, sum)
	return nil
}

func anonymizeImage(ctx context.Context, stage *blur.Stage, in, out string) (summary, error) {
	start := time.Now()
	raw, err := ingest.DecodeImage(in, "file")
	if err != nil {
		return summary{}, err
	}
	if err := stage.WarmUp(ctx, raw.Width, raw.Height); err != nil {
		return summary{}, err
	}
	f, err := stage.Obscure(ctx, raw)
	if err != nil {
		return summary{}, fmt.Errorf("input %s: %w", in, err)
	}
	if err := sink.WriteImage(out, f); err != nil {
		return summary{}, err
	}
	var s summary
	s.add(f)
	s.Elapsed = time.Since(start)
	return s, nil
}

// anonymizeVideo runs decode → blur → encode as three goroutines joined by
// blocking queues: a batch job must not lose frames, so a slow stage makes
// the ones before it wait.
func anonymizeVideo(ctx context.Context, stage *blur.Stage, in, out string, prog io.Writer, log *slog.Logger) (summary, error) {
	start := time.Now()
	src, err := ingest.NewFile(ctx, in, "file", log)
	if err != nil {
		return summary{}, err
	}
	info := src.Info()
	enc, err := sink.NewVideo(ctx, out, sink.VideoOptions{Width: info.Width, Height: info.Height, FrameRate: info.FrameRate})
	if err != nil {
		return summary{}, err
	}
	defer enc.Abort() // no-op after a successful Close
	if err := stage.WarmUp(ctx, info.Width, info.Height); err != nil {
		return summary{}, err
	}

	raws := queue.New[*frame.Raw](4, queue.Block, nil)
	obscured := queue.New[*blur.Frame](4, queue.Block, nil)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return src.Run(gctx, raws) })
	g.Go(func() error { return stage.Run(gctx, raws, obscured) })
	var sum summary
	g.Go(func() error {
		p := newProgress(prog, info.Frames)
		for {
			f, ok := obscured.Pop(gctx)
			if !ok {
				p.finish(sum.Frames)
				return gctx.Err()
			}
			if err := enc.Write(f); err != nil {
				return err
			}
			sum.add(f)
			p.update(sum.Frames)
		}
	})
	if err := g.Wait(); err != nil {
		return summary{}, err
	}
	if err := enc.Close(); err != nil {
		return summary{}, err
	}
	sum.Dropped = int(src.Decoded()) - sum.Frames
	sum.Elapsed = time.Since(start)
	return sum, nil
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
