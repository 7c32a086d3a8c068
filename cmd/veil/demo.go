package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline"
	"github.com/veilproject/veil/pipeline/exporter"
	"github.com/veilproject/veil/pipeline/footfall"
	"github.com/veilproject/veil/pipeline/frame"
	"github.com/veilproject/veil/pipeline/kafkaconf"
	"github.com/veilproject/veil/pipeline/publish"
	"github.com/veilproject/veil/pipeline/queue"
	"github.com/veilproject/veil/pipeline/record"
)

// DefaultSample is the built-in camera: people walking across a campus road,
// seen from above, from Debian's opencv-doc package.
const DefaultSample = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

// sampleCounting is the built-in camera's counting line and zone.
//
//go:embed sample.yaml
var sampleCounting []byte

const demoUsage = `usage: veil demo [flags]

Runs veil on a built-in camera with no outside service: the sample video is
replayed in a loop, in real time, as camera "sample"; every frame is
obscured, then people are counted on the obscured frames. Count events are
printed as JSON lines, obscured video is recorded in segments under
-out/sample (kept an hour, at most 1 GiB), and Prometheus metrics are served on -metrics-listen. Ctrl-C stops it
cleanly (the last count window is flushed, the recording finished).

flags:
`

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("demo", stderr, demoUsage)
	var of obscureFlags
	of.register(fs, 2*time.Second)
	input := fs.String("input", DefaultSample, "sample video played as the camera")
	countCfg := fs.String("count-config", "", "counting config for the camera (default: the built-in one for the sample)")
	outDir := fs.String("out", "veil-demo", "directory for the obscured recording")
	listen := fs.String("metrics-listen", "127.0.0.1:9108", "address serving /metrics")
	once := fs.Bool("once", false, "play the sample once and exit")
	fast := fs.Bool("fast", false, "decode as fast as possible instead of in real time (frames are never dropped then)")
	window := fs.Duration("window", 10*time.Second, "count event window")
	brokers := fs.String("brokers", "", "Kafka brokers for count events, comma-separated (default: an embedded in-process broker)")
	topic := fs.String("topic", kafkaconf.DefaultTopic, "Kafka topic for count events")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if err := of.validate(); err != nil {
		return err
	}
	ccfg, err := demoCountConfig(*countCfg)
	if err != nil {
		return err
	}
	ccfg.Window = *window
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return fmt.Errorf("demo output %s: %w", *outDir, unwrapPathErr(err))
	}

	// Everything this process exports, built here and handed down.
	ms, err := newStageMetrics()
	if err != nil {
		return err
	}
	reg, bm, pm, cm, im, rm := ms.reg, ms.blur, ms.pipe, ms.counter, ms.ingest, ms.record

	// Counts leave over Kafka: an embedded broker unless -brokers names
	// real ones; the exporter turns them into veil_footfall_* metrics.
	var kc kafkaconf.Config
	if *brokers == "" {
		cluster, embedded, err := embeddedKafka(ctx, *topic)
		if err != nil {
			return err
		}
		defer cluster.Close()
		kc = embedded
	} else {
		kc = kafkaconf.Config{Brokers: splitList(*brokers), Topic: *topic}
		kc.Defaults()
		if err := kc.Validate("kafka"); err != nil {
			return usageError{err}
		}
	}
	pub, err := publish.New(publish.Config{Kafka: kc, SpoolDir: filepath.Join(*outDir, "spool")}, publish.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	exp, err := exporter.New(exporter.Config{Kafka: kc}, exporter.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	expCtx, stopExporter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopExporter()
	expDone := make(chan error, 1)
	go func() { expDone <- exp.Run(expCtx) }()

	const camera = "sample"
	src, err := ingest.NewFile(ctx, *input, camera, log)
	if err != nil {
		return err
	}
	src.Realtime, src.Loop, src.Metrics = !*fast, !*once, im
	info := src.Info()
	det, err := detect.New(of.det, log)
	if err != nil {
		return err
	}
	defer det.Close()
	stage, err := blur.New(of.blur, blur.Deps{Camera: camera, Detector: det, Metrics: bm, Logger: log})
	if err != nil {
		return err
	}
	defer stage.Close(context.Background())
	cnt, err := counter.New(ccfg, counter.Deps{Camera: camera, Metrics: cm, Logger: log})
	if err != nil {
		return err
	}
	// Obscured video is recorded as the service does: 60 s segments under
	// -out/sample, kept for an hour and at most 1 GiB.
	recCfg := record.Config{Dir: *outDir, Segment: time.Minute, Keep: time.Hour, MaxBytes: 1 << 30, Preset: "ultrafast",
		FrameRate: int(info.FPS + 0.5)}
	recCfg.Defaults()
	rec, err := record.New(recCfg, camera, rm, log)
	if err != nil {
		return err
	}
	recPath := filepath.Join(*outDir, camera)
	retention := &record.Retention{Config: recCfg, Metrics: rm, Logger: log}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", *listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/", statusHandler(reg))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "veil demo: camera %q from %s\n  status:    http://%s/\n  metrics:   http://%s/metrics\n  recording: %s\n  counting:  %d line(s), %d zone(s), events every %s\n  kafka:     %v topic %s (embedded: %v), spool %s\n",
		camera, *input, ln.Addr(), ln.Addr(), recPath, len(ccfg.Lines), len(ccfg.Zones), ccfg.Window, kc.Brokers, kc.Topic, *brokers == "", filepath.Join(*outDir, "spool"))

	// Queues, from source to sinks. Video may be dropped (oldest first,
	// counted) only before blur, where a live camera must not wait; after
	// blur everything blocks, and count events are never dropped.
	dropped := pm.FramesDropped.WithLabelValues(camera, "blur", pipeline.DropQueueFull)
	policy := queue.DropOldest
	if *fast {
		policy = queue.Block
	}
	raws := queue.New[*frame.Raw](2, policy, func(*frame.Raw) { dropped.Inc() })
	obscured := queue.New[*blur.Frame](8, queue.Block, nil)
	counted := queue.New[*blur.Frame](8, queue.Block, nil)
	events := queue.New[footfall.Event](64, queue.Block, nil)
	delivered := pm.FramesOut.WithLabelValues(camera)

	pipe, pctx := errgroup.WithContext(ctx)
	pipe.Go(func() error { return src.Run(pctx, raws) })
	pipe.Go(func() error { return stage.Run(pctx, raws, obscured) })
	pipe.Go(func() error {
		defer events.Close()
		return cnt.Run(pctx, obscured, events, counted)
	})
	var sum summary
	pipe.Go(func() error {
		for f := range counted.C() {
			delivered.Inc()
			sum.add(f)
			rec.Write(f)
		}
		return nil
	})
	pipe.Go(func() error { return retention.Run(pctx, 10*time.Second) })
	// Events are printed and published. The publisher ignores Ctrl-C until
	// its input is closed (after the counter's final flush), so no count is
	// lost on shutdown: what Kafka does not take in time stays spooled.
	toKafka := queue.New[footfall.Event](64, queue.Block, nil)
	pubDone := make(chan error, 1)
	go func() { pubDone <- pub.Run(context.WithoutCancel(ctx), toKafka, 5*time.Second) }()
	pipe.Go(func() error {
		defer toKafka.Close()
		enc := json.NewEncoder(stdout)
		for e := range events.C() {
			if err := enc.Encode(e); err != nil {
				return err
			}
			if err := toKafka.Push(context.WithoutCancel(ctx), e); err != nil {
				return err
			}
		}
		return nil
	})

	serveErr := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("metrics server: %w", err)
		}
		close(serveErr)
	}()
	runErr := pipe.Wait()
	rec.Finish()
	if err := <-pubDone; err != nil && runErr == nil {
		runErr = err
	}
	// Let the exporter apply what was just published before it stops.
	settle := time.Now().Add(5 * time.Second)
	for time.Now().Before(settle) && !exporterCaughtUp(exp, cnt.Totals()) {
		time.Sleep(50 * time.Millisecond)
	}
	exported := exp.Totals()["sample"] // before it stops and lets its partitions go
	stopExporter()
	if err := <-expDone; err != nil && runErr == nil {
		runErr = err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-serveErr; err != nil && runErr == nil {
		runErr = err
	}
	fmt.Fprintf(stdout, "veil demo: %d frames obscured (%d faces, %d fail-closed), %d dropped before blur; crossings:", sum.Frames, sum.Faces, sum.FailClosed, int(src.Decoded())-sum.Frames)
	for _, t := range cnt.Totals() {
		fmt.Fprintf(stdout, " %s %d in %d out;", t.ID, t.Entries, t.Exits)
	}
	fmt.Fprint(stdout, " exported via kafka:")
	for line, io := range exported {
		fmt.Fprintf(stdout, " %s %d in %d out;", line, io[0], io[1])
	}
	fmt.Fprintln(stdout)
	if runErr != nil && errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		return nil // Ctrl-C: a clean stop
	}
	return runErr
}

// exporterCaughtUp reports whether the exporter shows the counter's totals.
func exporterCaughtUp(exp *exporter.Exporter, totals []footfall.LineCount) bool {
	got := exp.Totals()["sample"]
	for _, t := range totals {
		if got[t.ID] != [2]int64{int64(t.Entries), int64(t.Exits)} {
			return false
		}
	}
	return true
}

// demoCountConfig loads path, or the built-in sample config.
func demoCountConfig(path string) (counter.Config, error) {
	if path != "" {
		return loadCounterConfig(path)
	}
	return parseCounterConfig("built-in sample.yaml", sampleCounting)
}
