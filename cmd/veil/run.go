package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

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

// Config is veil.yaml, the service's configuration (see veil.example.yaml,
// which documents every key and which the tests load).
type Config struct {
	Cameras []CameraConfig `yaml:"cameras"`
	Metrics struct {
		// Listen serves /metrics. It defaults to 127.0.0.1:9108.
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
	HTTP struct {
		// Listen serves WHIP (/whip/{camera}). It defaults to :8080, and is
		// only opened when a camera has whip: true.
		Listen string `yaml:"listen"`
		// ICEIPs limits the addresses offered to WebRTC publishers.
		ICEIPs []string `yaml:"ice_ips"`
	} `yaml:"http"`
	Recordings record.Config    `yaml:"recordings"`
	Blur       blur.Config      `yaml:"blur"`
	Detector   detect.Config    `yaml:"detector"`
	Kafka      kafkaconf.Config `yaml:"kafka"`
	// SpoolDir holds count events Kafka has not acknowledged. It defaults
	// to ${recordings.dir}/spool, or ./veil-spool.
	SpoolDir string `yaml:"spool_dir"`
	Exporter struct {
		// Enabled runs the Kafka exporter in this process too.
		Enabled bool   `yaml:"enabled"`
		GroupID string `yaml:"group_id"`
	} `yaml:"exporter"`
}

// CameraConfig is one source.
type CameraConfig struct {
	// ID names the camera in metrics, events and recordings.
	ID string `yaml:"id"`
	// URL is an RTSP camera to pull (rtsp://user:pass@host:554/path).
	URL string `yaml:"url"`
	// Transport is tcp (default), udp or auto.
	Transport string `yaml:"transport"`
	// File replays a video file in a loop, in real time, as a camera.
	File string `yaml:"file"`
	// WHIP accepts a WebRTC publisher at POST /whip/{id}.
	WHIP bool `yaml:"whip"`
	// Token is the WHIP bearer token; $VEIL_WHIP_TOKEN_{ID} (upper case,
	// '-' and '.' as '_') overrides it.
	Token string `yaml:"token"`
	// Lines and Zones are counted on this camera's obscured frames.
	Lines []counter.Line `yaml:"lines"`
	Zones []counter.Zone `yaml:"zones"`
}

// loadConfig reads path strictly (an unknown key is an error naming its
// line), applies VEIL_* environment overrides and defaults, and validates.
func loadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, unwrapPathErr(err))
	}
	return parseConfig(path, b)
}

// parseConfig is loadConfig after reading the file.
func parseConfig(path string, b []byte) (Config, error) {
	var c Config
	if err := decodeStrict(path, b, &c); err != nil {
		return c, err
	}
	if v := os.Getenv("VEIL_METRICS_LISTEN"); v != "" {
		c.Metrics.Listen = v
	}
	if v := os.Getenv("VEIL_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = splitList(v)
	}
	if v := os.Getenv("VEIL_RECORDINGS_DIR"); v != "" {
		c.Recordings.Dir = v
	}
	c.defaults()
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) defaults() {
	if c.Metrics.Listen == "" {
		c.Metrics.Listen = "127.0.0.1:9108"
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = ":8080"
	}
	for i := range c.Cameras {
		env := "VEIL_WHIP_TOKEN_" + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(c.Cameras[i].ID))
		if v := os.Getenv(env); v != "" {
			c.Cameras[i].Token = v
		}
	}
	c.Recordings.Defaults()
	c.Blur.Defaults()
	c.Detector.Defaults()
	if len(c.Kafka.Brokers) > 0 {
		c.Kafka.Defaults()
	}
	if c.SpoolDir == "" {
		c.SpoolDir = "veil-spool"
		if c.Recordings.Dir != "" {
			c.SpoolDir = filepath.Join(c.Recordings.Dir, "spool")
		}
	}
}

func (c *Config) validate() error {
	if len(c.Cameras) == 0 {
		return errors.New("cameras: at least one camera is required")
	}
	seen := map[string]bool{}
	for i, cam := range c.Cameras {
		key := fmt.Sprintf("cameras[%d]", i)
		if err := footfall.ValidID(cam.ID); err != nil {
			return fmt.Errorf("%s.id: %w", key, err)
		}
		if seen[cam.ID] {
			return fmt.Errorf("%s.id: %q is used twice", key, cam.ID)
		}
		seen[cam.ID] = true
		n := 0
		for _, set := range []bool{cam.URL != "", cam.File != "", cam.WHIP} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: set exactly one of url, file and whip", key)
		}
		if cam.WHIP && len(cam.Token) < 16 {
			return fmt.Errorf("%s.token: a WHIP camera needs a bearer token of at least 16 characters (or $VEIL_WHIP_TOKEN_%s)", key, strings.ToUpper(cam.ID))
		}
		if cam.URL != "" && !strings.HasPrefix(cam.URL, "rtsp://") && !strings.HasPrefix(cam.URL, "rtsps://") {
			return fmt.Errorf("%s.url: %s is not an rtsp:// URL", key, ingest.Redact(cam.URL))
		}
		switch cam.Transport {
		case "", "tcp", "udp", "auto":
		default:
			return fmt.Errorf("%s.transport: %q (want tcp, udp or auto)", key, cam.Transport)
		}
		cc := counter.Config{Lines: cam.Lines, Zones: cam.Zones}
		cc.Defaults()
		if err := cc.Validate(key); err != nil {
			return err
		}
	}
	if err := c.Recordings.Validate("recordings"); err != nil {
		return err
	}
	if err := c.Blur.Validate("blur"); err != nil {
		return err
	}
	if err := c.Detector.Validate("detector"); err != nil {
		return err
	}
	if len(c.Kafka.Brokers) > 0 {
		if err := c.Kafka.Validate("kafka"); err != nil {
			return err
		}
	} else if c.Exporter.Enabled {
		return errors.New("exporter.enabled: needs kafka.brokers")
	}
	return nil
}

const runUsage = `usage: veil run -config veil.yaml

Runs the service: every configured camera is pulled, decoded, obscured,
counted and recorded (obscured) with retention; count events go to Kafka
(or, without kafka.brokers, to stdout as JSON lines); /metrics is served.
SIGINT or SIGTERM stops it in order: sources, then blur, counters (final
window flushed), recordings (segment finished), Kafka (spool drained).

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
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}

	ms, err := newStageMetrics()
	if err != nil {
		return err
	}
	reg, bm, pm, cm, im, rm := ms.reg, ms.blur, ms.pipe, ms.counter, ms.ingest, ms.record

	// Per camera: source → (drop oldest) → blur → counter → recorder.
	events := queue.New[footfall.Event](256, queue.Block, nil)
	pipe, pctx := errgroup.WithContext(ctx)
	var counters sync.WaitGroup
	var whipCams []ingest.WHIPCamera
	for _, cam := range cfg.Cameras {
		raws, err := startCamera(ctx, pctx, pipe, &counters, cam, cfg, events, bm, pm, cm, im, rm, log)
		if err != nil {
			return err
		}
		if cam.WHIP {
			whipCams = append(whipCams, ingest.WHIPCamera{ID: cam.ID, Token: cam.Token, Out: raws})
		}
	}
	if len(whipCams) > 0 {
		whip := ingest.NewWHIP(whipCams, &ingest.WHIP{IPs: cfg.HTTP.ICEIPs, Logger: log, Metrics: im})
		mux := http.NewServeMux()
		mux.Handle("/whip/", whip)
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(ln)
		fmt.Fprintf(stdout, "veil run: WHIP on http://%s/whip/{camera}\n", ln.Addr())
		// On shutdown: stop taking sessions, end the open ones, then close
		// the cameras' queues so their pipelines drain.
		pipe.Go(func() error {
			<-pctx.Done()
			shutdown(hs)
			whip.Close()
			for _, c := range whipCams {
				c.Out.Close()
			}
			return nil
		})
	}
	go func() { counters.Wait(); events.Close() }()

	// Count events: Kafka, or stdout.
	var pubDone chan error
	if len(cfg.Kafka.Brokers) > 0 {
		pub, err := publish.New(publish.Config{Kafka: cfg.Kafka, SpoolDir: cfg.SpoolDir}, publish.Deps{Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		pubDone = make(chan error, 1)
		go func() { pubDone <- pub.Run(context.WithoutCancel(ctx), events, 5*time.Second) }()
	} else {
		pipe.Go(func() error {
			enc := json.NewEncoder(stdout)
			for e := range events.C() {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		})
	}
	var expDone chan error
	expCtx, stopExp := context.WithCancel(context.WithoutCancel(ctx))
	defer stopExp()
	if cfg.Exporter.Enabled {
		exp, err := exporter.New(exporter.Config{Kafka: cfg.Kafka, GroupID: cfg.Exporter.GroupID}, exporter.Deps{Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		expDone = make(chan error, 1)
		go func() { expDone <- exp.Run(expCtx) }()
	}
	if cfg.Recordings.Dir != "" {
		ret := &record.Retention{Config: cfg.Recordings, Metrics: rm, Logger: log}
		pipe.Go(func() error { return ret.Run(pctx, 10*time.Second) })
	}
	srv, addr, err := serveMetrics(cfg.Metrics.Listen, reg)
	if err != nil {
		return err
	}
	defer shutdown(srv)
	fmt.Fprintf(stdout, "veil run: %d camera(s), metrics http://%s/metrics\n", len(cfg.Cameras), addr)

	runErr := pipe.Wait()
	if pubDone != nil {
		if err := <-pubDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	stopExp()
	if expDone != nil {
		<-expDone
	}
	if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return runErr
}

// startCamera builds one camera's pipeline and returns the queue its
// source feeds (for WHIP cameras, the caller's endpoint feeds it).
func startCamera(ctx, pctx context.Context, pipe *errgroup.Group, counters *sync.WaitGroup, cam CameraConfig, cfg Config,
	events *queue.Queue[footfall.Event], bm *blur.Metrics, pm *pipeline.Metrics, cm *counter.Metrics, im *ingest.Metrics, rm *record.Metrics, log *slog.Logger) (*queue.Queue[*frame.Raw], error) {
	det, err := detect.New(cfg.Detector, log)
	if err != nil {
		return nil, err
	}
	stage, err := blur.New(cfg.Blur, blur.Deps{Camera: cam.ID, Detector: det, Metrics: bm, Logger: log})
	if err != nil {
		det.Close()
		return nil, err
	}
	cnt, err := counter.New(counter.Config{Lines: cam.Lines, Zones: cam.Zones}, counter.Deps{Camera: cam.ID, Metrics: cm, Logger: log})
	if err != nil {
		return nil, err
	}
	var rec *record.Recorder
	if cfg.Recordings.Dir != "" {
		if rec, err = record.New(cfg.Recordings, cam.ID, rm, log); err != nil {
			return nil, err
		}
	}
	dropped := pm.FramesDropped.WithLabelValues(cam.ID, "blur", pipeline.DropQueueFull)
	raws := queue.New[*frame.Raw](2, queue.DropOldest, func(*frame.Raw) { dropped.Inc() })
	obscured := queue.New[*blur.Frame](8, queue.Block, nil)
	counted := queue.New[*blur.Frame](8, queue.Block, nil)
	camEvents := queue.New[footfall.Event](16, queue.Block, nil)

	switch {
	case cam.WHIP:
		// Fed by the WHIP endpoint.
	case cam.File != "":
		src, err := ingest.NewFile(ctx, cam.File, cam.ID, log)
		if err != nil {
			return nil, err
		}
		src.Realtime, src.Loop, src.Metrics = true, true, im
		pipe.Go(func() error { return ignoreCancel(src.Run(pctx, raws)) })
	default:
		src := &ingest.RTSP{Camera: cam.ID, URL: cam.URL, Transport: cam.Transport, Logger: log, Metrics: im}
		pipe.Go(func() error { return ignoreCancel(src.Run(pctx, raws)) })
	}
	pipe.Go(func() error {
		defer det.Close()
		defer stage.Close(context.Background())
		// Stops when the source closes raws (on shutdown), not on pctx, so
		// that frames already decoded are still obscured and counted.
		return ignoreCancel(stage.Run(context.WithoutCancel(pctx), raws, obscured))
	})
	pipe.Go(func() error {
		defer camEvents.Close()
		return cnt.Run(context.WithoutCancel(pctx), obscured, camEvents, counted)
	})
	counters.Add(1)
	pipe.Go(func() error {
		defer counters.Done() // the shared queue closes after every camera's last event
		for e := range camEvents.C() {
			if err := events.Push(context.WithoutCancel(pctx), e); err != nil {
				return err
			}
		}
		return nil
	})
	pipe.Go(func() error {
		if rec == nil {
			for range counted.C() {
			}
			return nil
		}
		return rec.Run(pctx, counted)
	})
	return raws, nil
}

func ignoreCancel(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
