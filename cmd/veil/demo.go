package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/console"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
)

// demoConfig is veil demo's veil.yaml.
//
//go:embed demo.yaml
var demoConfig []byte

// sampleCounting is the built-in camera's counting line and zone.
//
//go:embed sample.yaml
var sampleCounting []byte

const demoUsage = `usage: veil demo [flags]

Runs veil on a built-in camera with no outside service: veil run with the
embedded configuration cmd/veil/demo.yaml. The sample video is replayed in a
loop, in real time, as camera "sample"; every frame is obscured, then people
are counted on the obscured frames. Count events are printed as JSON lines
and published to an embedded Kafka broker, from which the exporter makes
veil_footfall_* metrics; obscured video is recorded in segments under
-out/sample (kept an hour, at most 1 GiB); a status page and /metrics are on
-metrics-listen, the console (live view, recordings, counts) on -listen with
a user demo whose password is printed. Ctrl-C stops it as veil run stops.

flags:
`

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config.Config
	if err := config.DecodeStrict("demo.yaml", demoConfig, &cfg); err != nil {
		return err
	}
	cfg.Digest = config.DigestOf(demoConfig, config.ApplyEnv(&cfg, os.Getenv))
	cfg.Defaults()
	cam := &cfg.Cameras[0]
	fs := newFlagSet("demo", stderr, demoUsage)
	var of obscureFlags
	of.register(fs, &cfg, cfg.Blur.Deadline)
	fs.StringVar(&cam.File, "input", cam.File, "sample video played as the camera")
	countCfg := fs.String("count-config", "", "counting config for the camera (default: the built-in one for the sample)")
	out := fs.String("out", cfg.Recordings.Dir, "directory for the obscured recording, the spool, the console's audit log and TLS keys")
	fs.StringVar(&cfg.Metrics.Listen, "metrics-listen", cfg.Metrics.Listen, "address serving the status page and /metrics")
	fs.StringVar(&cfg.HTTP.Listen, "listen", cfg.HTTP.Listen, "address serving the console (live view, recordings, counts)")
	fs.BoolVar(&cam.Once, "once", false, "play the sample once and exit")
	fs.BoolVar(&cam.Fast, "fast", false, "decode as fast as possible instead of in real time (frames are never dropped then)")
	window := fs.Duration("window", 10*time.Second, "count event window")
	brokers := fs.String("brokers", "", "Kafka brokers for count events, comma-separated (default: an embedded in-process broker)")
	fs.StringVar(&cfg.Kafka.Topic, "topic", cfg.Kafka.Topic, "Kafka topic for count events")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if err := errors.Join(of.validate(), demoCounting(cam, *countCfg, *window)); err != nil {
		return err
	}
	cfg.SetRecordingsDir(*out)
	embedded := *brokers == ""
	if embedded {
		cluster, kc, err := kafkaconf.Embedded(ctx, cfg.Kafka.Topic)
		if err != nil {
			return err
		}
		defer cluster.Close()
		cfg.Kafka.Brokers = kc.Brokers
	} else {
		cfg.Kafka.Brokers = config.SplitList(*brokers)
	}
	password, err := demoLogin(&cfg)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return usageError{err}
	}
	svc, err := newService(cfg, stdout, log)
	if err != nil {
		return err
	}
	addr := svc.Endpoints().Metrics
	fmt.Fprintf(stdout, "veil demo: camera %q from %s\n  console:   http://%s/ (user demo, password %s)\n  status:    http://%s/\n  metrics:   http://%s/metrics\n  recording: %s\n  counting:  %d line(s), %d zone(s), events every %s\n  kafka:     %v topic %s (embedded: %v), spool %s\n",
		cam.ID, cam.File, svc.Endpoints().WHIP, password, addr, addr, filepath.Join(cfg.Recordings.Dir, cam.ID), len(cam.Counting.Lines), len(cam.Counting.Zones), cam.Counting.Window,
		cfg.Kafka.Brokers, cfg.Kafka.Topic, embedded, cfg.SpoolDir)
	runErr := svc.Run(ctx)
	svc.WriteSummary(stdout)
	return runErr
}

// demoLogin adds the console user demo to cfg and returns its password.
func demoLogin(cfg *config.Config) (string, error) {
	u, pw, err := console.DemoUser()
	cfg.Console.Users = []console.User{u}
	return pw, err
}

// demoCounting sets the camera's counting from path, or the built-in
// sample's, with the given window.
func demoCounting(cam *config.Camera, path string, window time.Duration) (err error) {
	if path != "" {
		cam.Counting, err = config.LoadCounting(path)
	} else {
		cam.Counting, err = config.ParseCounting("built-in sample.yaml", sampleCounting)
	}
	cam.Counting.Window = window
	return err
}
