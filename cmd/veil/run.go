package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/veilproject/veil/pipeline"
	"github.com/veilproject/veil/pipeline/config"
)

const runUsage = `usage: veil run -config veil.yaml

Runs the service: every configured camera is pulled, decoded, obscured,
counted and recorded (obscured) with retention; count events go to Kafka
(or, without kafka.brokers, to stdout as JSON lines); /metrics and a status
page are served. SIGINT or SIGTERM stops it in order, each step with a
deadline: sources, then blur, counters (final window flushed) and
recordings (segment finished), then Kafka (spool drained).

flags:
`

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("run", stderr, runUsage)
	cfgPath := fs.String("config", "", "service configuration (YAML)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *cfgPath == "" {
		fs.Usage()
		return usageError{errors.New("-config is required")}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	svc, err := newService(cfg, stdout, log)
	if err != nil {
		return err
	}
	ends := svc.Endpoints()
	if ends.WHIP != "" {
		fmt.Fprintf(stdout, "veil run: console, WHIP and WHEP listening on %s\n", ends.WHIP)
	}
	fmt.Fprintf(stdout, "veil run: %d camera(s), status http://%s/, metrics http://%s/metrics\n", len(cfg.Cameras), ends.Metrics, ends.Metrics)
	return svc.Run(ctx)
}

// newService is the service of cfg on a fresh registry, its count events
// printed on stdout.
func newService(cfg config.Config, stdout io.Writer, log *slog.Logger) (*pipeline.Service, error) {
	reg := pipeline.NewRegistry()
	m, err := pipeline.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return pipeline.NewService(cfg, pipeline.ServiceDeps{Registry: reg, Metrics: m, Logger: log, Events: stdout})
}
