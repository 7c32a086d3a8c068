package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline/footfall"
	"github.com/veilproject/veil/pipeline/frame"
	"github.com/veilproject/veil/pipeline/queue"
)

const countUsage = `usage: veil count [flags] -config LINES.yaml VIDEO

Counts people crossing lines and in zones in a video file. Every frame is
obscured first; the counter only ever sees obscured frames. Prints the
totals, and with -events the anonymous count events as JSON lines.

flags:
`

// loadCounterConfig reads a counting config strictly: an unknown key is an
// error naming its line.
func loadCounterConfig(path string) (counter.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return counter.Config{}, fmt.Errorf("config %s: %w", path, unwrapPathErr(err))
	}
	return parseCounterConfig(path, b)
}

// decodeStrict decodes YAML into v, refusing unknown keys (the error
// names the line); an empty document leaves v as it is.
func decodeStrict(path string, b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

func parseCounterConfig(path string, b []byte) (counter.Config, error) {
	var cfg counter.Config
	if err := decodeStrict(path, b, &cfg); err != nil {
		return cfg, err
	}
	cfg.Defaults()
	if err := cfg.Validate("counter"); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

func cmdCount(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("count", stderr, countUsage)
	var of obscureFlags
	of.register(fs, 30*time.Second)
	cfgPath := fs.String("config", "", "counting config: lines, zones (YAML; see cmd/veil/sample.yaml)")
	events := fs.Bool("events", false, "print count events as JSON lines")
	crossings := fs.Bool("crossings", false, "print each crossing: frame, line, direction")
	quiet := fs.Bool("quiet", false, "no progress output")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 || *cfgPath == "" {
		fs.Usage()
		return usageError{errors.New("want -config and one VIDEO")}
	}
	if err := of.validate(); err != nil {
		return err
	}
	ccfg, err := loadCounterConfig(*cfgPath)
	if err != nil {
		return err
	}
	src, err := ingest.NewFile(ctx, fs.Arg(0), "file", log)
	if err != nil {
		return err
	}
	det, err := detect.New(of.det, log)
	if err != nil {
		return err
	}
	defer det.Close()
	ms, err := newStageMetrics()
	if err != nil {
		return err
	}
	bm, cm := ms.blur, ms.counter
	stage, err := blur.New(of.blur, blur.Deps{Camera: "file", Detector: det, Metrics: bm, Logger: log})
	if err != nil {
		return err
	}
	defer stage.Close(context.Background())
	info := src.Info()
	if err := stage.WarmUp(ctx, info.Width, info.Height); err != nil {
		return err
	}
	var onCrossing func(counter.Crossing)
	if *crossings {
		onCrossing = func(c counter.Crossing) {
			fmt.Fprintf(stdout, "crossing frame=%d line=%s direction=%s\n", c.Frame, c.Line, c.Direction)
		}
	}
	cnt, err := counter.New(ccfg, counter.Deps{Camera: "file", Metrics: cm, Logger: log, OnCrossing: onCrossing})
	if err != nil {
		return err
	}

	var prog io.Writer = stderr
	if *quiet {
		prog = io.Discard
	}
	raws := queue.New[*frame.Raw](4, queue.Block, nil)
	obscured := queue.New[*blur.Frame](4, queue.Block, nil)
	counted := queue.New[*blur.Frame](4, queue.Block, nil)
	evq := queue.New[footfall.Event](64, queue.Block, nil)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return src.Run(gctx, raws) })
	g.Go(func() error { return stage.Run(gctx, raws, obscured) })
	g.Go(func() error {
		defer evq.Close()
		return cnt.Run(gctx, obscured, evq, counted)
	})
	g.Go(func() error {
		p := newProgress(prog, info.Frames)
		n := 0
		for range counted.C() {
			n++
			p.update(n)
		}
		p.finish(n)
		return nil
	})
	g.Go(func() error {
		enc := json.NewEncoder(stdout)
		for e := range evq.C() {
			if *events {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	for _, t := range cnt.Totals() {
		fmt.Fprintf(stdout, "line %s: %d in, %d out\n", t.ID, t.Entries, t.Exits)
	}
	return nil
}
