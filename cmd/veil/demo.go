package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline"
	"github.com/veilproject/veil/pipeline/frame"
	"github.com/veilproject/veil/pipeline/queue"
	"github.com/veilproject/veil/pipeline/sink"
)

// DefaultSample is the built-in camera: people walking across a campus road,
// seen from above, from Debian's opencv-doc package.
const DefaultSample = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

const demoUsage = `usage: veil demo [flags]

Runs veil on a built-in camera with no outside service: the sample video is
replayed in real time as camera "sample", every frame is obscured, the
obscured video is written to -out, and Prometheus metrics are served on
-metrics-listen. It loops until interrupted (or once, with -once).

flags:
`

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("demo", stderr, demoUsage)
	var of obscureFlags
	of.register(fs, 2*time.Second)
	input := fs.String("input", DefaultSample, "sample video played as the camera")
	outDir := fs.String("out", "veil-demo", "directory for the obscured recording")
	listen := fs.String("metrics-listen", "127.0.0.1:9108", "address serving /metrics")
	once := fs.Bool("once", false, "play the sample once and exit")
	fast := fs.Bool("fast", false, "decode as fast as possible instead of in real time (frames are never dropped then)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if err := of.validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return fmt.Errorf("demo output %s: %w", *outDir, unwrapPathErr(err))
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bm, err := blur.NewMetrics(reg)
	if err != nil {
		return err
	}
	pm, err := pipeline.NewMetrics(reg)
	if err != nil {
		return err
	}
	det, err := detect.New(of.det, log)
	if err != nil {
		return err
	}
	defer det.Close()
	const camera = "sample"
	stage, err := blur.New(of.blur, blur.Deps{Camera: camera, Detector: det, Metrics: bm, Logger: log})
	if err != nil {
		return err
	}
	defer stage.Close(context.Background())

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", *listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "veil demo: camera %q from %s\n  metrics:   http://%s/metrics\n  recording: %s\n",
		camera, *input, ln.Addr(), filepath.Join(*outDir, "sample.mp4"))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error {
		defer func() { go srv.Close() }()
		for pass := 1; ; pass++ {
			sum, err := demoPass(gctx, stage, pm, *input, camera, *outDir, !*fast, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "pass %d: %s\n", pass, sum)
			if *once {
				return errDemoDone
			}
		}
	})
	err = g.Wait()
	if errors.Is(err, errDemoDone) || (errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		return nil
	}
	return err
}

var errDemoDone = errors.New("demo finished")

// demoPass plays the sample once, live: the source is paced in real time
// and its queue drops the oldest frame when blur falls behind, as a camera
// would; the recording sink gets every frame blur produces.
func demoPass(ctx context.Context, stage *blur.Stage, pm *pipeline.Metrics, input, camera, outDir string, realtime bool, log *slog.Logger) (summary, error) {
	start := time.Now()
	src, err := ingest.NewFile(ctx, input, camera, log)
	if err != nil {
		return summary{}, err
	}
	src.Realtime = realtime
	info := src.Info()
	out := filepath.Join(outDir, camera+".mp4")
	// The encoder outlives a cancelled context so that shutdown finishes the
	// recording instead of leaving a broken file.
	enc, err := sink.NewVideo(context.WithoutCancel(ctx), out, sink.VideoOptions{Width: info.Width, Height: info.Height, FrameRate: info.FrameRate, Preset: "ultrafast"})
	if err != nil {
		return summary{}, err
	}
	defer enc.Abort()

	dropped := pm.FramesDropped.WithLabelValues(camera, "blur", pipeline.DropQueueFull)
	policy := queue.DropOldest
	if !realtime {
		policy = queue.Block
	}
	raws := queue.New[*frame.Raw](2, policy, func(*frame.Raw) { dropped.Inc() })
	counted := queue.New[*frame.Raw](2, queue.Block, nil)
	obscured := queue.New[*blur.Frame](8, queue.Block, nil)
	in, delivered := pm.FramesIn.WithLabelValues(camera), pm.FramesOut.WithLabelValues(camera)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return src.Run(gctx, raws) })
	g.Go(func() error {
		// Counting happens after the dropping queue so that decoded minus
		// delivered equals what was dropped.
		defer counted.Close()
		for {
			r, ok := raws.Pop(gctx)
			if !ok {
				return gctx.Err()
			}
			in.Inc()
			if err := counted.Push(gctx, r); err != nil {
				return err
			}
		}
	})
	g.Go(func() error { return stage.Run(gctx, counted, obscured) })
	var sum summary
	g.Go(func() error {
		for {
			f, ok := obscured.Pop(gctx)
			if !ok {
				return gctx.Err()
			}
			if err := enc.Write(f); err != nil {
				return err
			}
			delivered.Inc()
			sum.Frames++
			sum.Detected += f.Detected()
			sum.Faces += f.Faces()
			if f.FailClosed() != "" {
				sum.FailClosed++
			}
		}
	})
	runErr := g.Wait()
	if runErr != nil && ctx.Err() == nil {
		return summary{}, runErr
	}
	if err := enc.Close(); err != nil {
		return summary{}, err
	}
	if runErr != nil {
		log.Info("recording finished early on shutdown", "path", out, "frames", sum.Frames)
		return summary{}, runErr
	}
	sum.Dropped = int(src.Decoded()) - sum.Frames
	sum.Elapsed = time.Since(start)
	return sum, nil
}
