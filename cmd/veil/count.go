package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline"
	"github.com/veilproject/veil/pipeline/config"
)

const countUsage = `usage: veil count [flags] -config LINES.yaml VIDEO

Counts people crossing lines and in zones in a video file. Every frame is
obscured first; the counter only ever sees obscured frames. Prints the
totals, and with -events the anonymous count events as JSON lines.

flags:
`

func cmdCount(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	cfg := jobDefaults()
	fs := newFlagSet("count", stderr, countUsage)
	var of obscureFlags
	of.register(fs, &cfg, 30*time.Second)
	cfgPath := fs.String("config", "", "counting config: lines, zones (YAML; see cmd/veil/sample.yaml)")
	events := fs.Bool("events", false, "print count events as JSON lines")
	crossings := fs.Bool("crossings", false, "print each crossing: frame, line, direction")
	occupancy := fs.Bool("occupancy", false, "print each zone's occupancy each time it is measured: frame, zone, people")
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
	counting, err := config.LoadCounting(*cfgPath)
	if err != nil {
		return err
	}
	job := pipeline.FileJob{In: fs.Arg(0), Counting: &counting, Progress: stderr}
	if *crossings {
		job.OnCrossing = func(c counter.Crossing) { fmt.Fprintln(stdout, c) }
	}
	if *occupancy {
		job.OnOccupancy = func(o counter.Occupancy) { fmt.Fprintln(stdout, o) }
	}
	if *events {
		enc := json.NewEncoder(stdout)
		job.OnEvent = func(e footfall.Event) error { return enc.Encode(e) }
	}
	if *quiet {
		job.Progress = nil
	}
	sum, err := job.Run(ctx, cfg, log)
	if err != nil {
		return err
	}
	for _, t := range sum.Crossings {
		fmt.Fprintf(stdout, "line %s: %d in, %d out\n", t.ID, t.Entries, t.Exits)
	}
	return nil
}
