package pipeline

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/blur/engine"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/ingest"
	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/console"
	"github.com/veilproject/veil/pipeline/counts/exporter"
	"github.com/veilproject/veil/pipeline/counts/publish"
	"github.com/veilproject/veil/pipeline/output/live"
	"github.com/veilproject/veil/pipeline/output/record"
	"github.com/veilproject/veil/pipeline/placement"
	"github.com/veilproject/veil/queue"
	"github.com/veilproject/veil/rtcconf"
)

// Shutdown bounds. Once the service is told to stop, each camera has
// cameraDrain to obscure, count and record what it already decoded; the
// counts path then has publishDrain to hand the backlog to Kafka (what it
// cannot send stays spooled on disk for the next start); the in-process
// exporter gets exporterSettle to apply what was just published; HTTP
// servers get serverShutdown. The sum bounds a stop.
const (
	cameraDrain    = 5 * time.Second
	publishDrain   = 3 * time.Second
	exporterSettle = 5 * time.Second
	serverShutdown = 5 * time.Second
	// eventQueue holds count events of all cameras between the counters
	// and the counts path; it blocks when full (events are never dropped).
	// The spool is the real buffer (durable, 64 MiB): this queue only
	// decouples, and at one event per camera per window it is never near
	// full unless the spool is.
	eventQueue = 16
)

// ServiceDeps are the service's wiring.
type ServiceDeps struct {
	// Registry is served on /metrics and read by the status page.
	// Required; NewRegistry makes one.
	Registry *prometheus.Registry
	// Metrics are the stages' metrics, registered on Registry. Required.
	Metrics *Metrics
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Events receives count events as JSON lines when they are printed
	// (no kafka.brokers, or print_events). It defaults to discarding.
	Events io.Writer
	// IncludeLoopback offers loopback ICE candidates to live viewers
	// (tests with local peers; browsers ignore them).
	IncludeLoopback bool
}

// Endpoints are the addresses the service listens on.
type Endpoints struct {
	Metrics string // host:port of /metrics, / and /api/status
	WHIP    string // host:port of http.listen (WHIP, the console, WHEP); empty when not opened
}

// Service is veil run: every configured camera, the counts path, the
// exporter (if enabled), retention and the HTTP servers, owned by one Run.
type Service struct {
	cfg     config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	events  *queue.Queue[footfall.Event]
	print   io.Writer // nil: events are not printed
	cams    []*Camera
	det     detect.Detector // the one detector, shared through eng
	people  detect.Detector // the counter's person detector, eng's low network; nil if no camera needs it
	eng     *engine.Engine
	whip    *ingest.WHIP
	pub     *publish.Publisher
	exp     *exporter.Exporter
	ret     *record.Retention
	streams map[string]*live.Stream // by camera
	con     *console.Console        // nil: no console
	servers []*server
	ends    Endpoints
	deps    ServiceDeps
	slots   map[string]camSlot // by camera: what outlives each of its runs

	// Placement (nil: every camera runs here): the site's group tells
	// placed which cameras to serve; the latest list waits in want.
	placer *placement.Placer
	want   chan []string
	// reconf names a camera to restart with its slot's new configuration
	// (the console's editor).
	reconf  chan string
	meter   *costMeter // nil without placement: costs are only for the balancer
	camsMu  sync.Mutex // s.cams grows while cameras restart
	slotsMu sync.Mutex // a slot's camera changes with the editor
	editMu  sync.Mutex // one edit of the configuration file at a time

	exported map[string]map[string][2]int64
}

type server struct {
	srv *http.Server
	ln  net.Listener
	tls *certReloader // served over HTTPS when set
	// stopOnShutdown closes the server as soon as shutdown starts (WHIP: no
	// new publisher then), not after the cameras have drained.
	stopOnShutdown bool
}

// run serves in g until stop is closed, then shuts down within
// serverShutdown.
func (sv *server) run(g *errgroup.Group, stop <-chan struct{}) {
	g.Go(func() error {
		var err error
		if sv.tls != nil {
			sv.srv.TLSConfig = &tls.Config{GetCertificate: sv.tls.GetCertificate, MinVersion: tls.VersionTLS12}
			err = sv.srv.ServeTLS(sv.ln, "", "")
		} else {
			err = sv.srv.Serve(sv.ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http %s: %w", sv.ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-stop
		sctx, cancel := context.WithTimeout(context.Background(), serverShutdown)
		defer cancel()
		sv.srv.Shutdown(sctx)
		return nil
	})
}

// NewService builds everything cfg (already validated) describes and binds
// the listeners; Run starts it. On error, what was built is released.
func NewService(cfg config.Config, deps ServiceDeps) (_ *Service, err error) {
	if deps.Registry == nil || deps.Metrics == nil {
		return nil, errors.New("pipeline: service needs a registry and metrics")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: deps.Logger, reg: deps.Registry, events: queue.New[footfall.Event](eventQueue, queue.Block, nil),
		streams: map[string]*live.Stream{}, deps: deps, slots: map[string]camSlot{}, reconf: make(chan string, 8)}
	for _, w := range cfg.Warnings() {
		s.log.Warn("insecure setting: " + w)
	}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	if len(cfg.Kafka.Brokers) == 0 || cfg.PrintEvents {
		s.print = deps.Events
		if s.print == nil {
			s.print = io.Discard
		}
	}
	tokens := s.tokenGate()
	var whipCams []ingest.WHIPCamera
	for _, cam := range cfg.Cameras {
		if cam.WHIP {
			whipCams = append(whipCams, ingest.WHIPCamera{ID: cam.ID, Token: cam.Token})
		}
	}
	if len(whipCams) > 0 {
		s.whip = ingest.NewWHIP(ingest.WHIPConfig{Cameras: whipCams, IPs: cfg.HTTP.ICEIPs, MaxPixels: cfg.MaxFramePixels, AllowOrigins: cfg.HTTP.WHIPOrigins},
			ingest.WHIPDeps{Tokens: tokens, Logger: deps.Logger, Metrics: deps.Metrics.Ingest, Replaced: func(camera, from string) {
				if s.con != nil {
					s.con.PublisherReplaced(camera, from)
				}
			}})
	}
	if err := s.newDetectors(deps); err != nil {
		return nil, err
	}
	for i, cam := range cfg.Cameras {
		// The cameras' sweeps are spread evenly over the sweep interval.
		if err := s.newSlot(cam, float64(i)/float64(len(cfg.Cameras))); err != nil {
			return nil, err
		}
		if cfg.Placement.On() {
			continue // built each time the site's group gives it to this box
		}
		c, err := s.newCamera(cam.ID)
		if err != nil {
			return nil, err
		}
		s.cams = append(s.cams, c)
	}
	if cfg.Placement.On() {
		if err := s.newPlacer(); err != nil {
			return nil, err
		}
	}
	if cfg.Recordings.Dir != "" {
		s.ret = &record.Retention{Config: cfg.Recordings, Metrics: deps.Metrics.Record, Logger: deps.Logger}
	}
	if err := s.newCountsPath(deps); err != nil {
		return nil, err
	}
	if err := s.newMetricsServer(deps); err != nil {
		return nil, err
	}
	if cfg.ConsoleOn() {
		if s.con, err = s.newConsole(deps, tokens); err != nil {
			return nil, err
		}
	}
	if s.whip != nil || s.con != nil {
		if err := s.newHTTPServer(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newDetectors builds the face detector, the shared engine and, if a
// camera counts with it, the person detector below faces.
func (s *Service) newDetectors(deps ServiceDeps) (err error) {
	dcfg := s.cfg.Detector
	if dcfg.Lanes == 0 {
		// A lane per camera, up to two per core: an inference on one
		// thread wastes less than one spread over threads that wait for
		// each other when one is preempted, and more lanes than cores keep
		// the cores busy between a camera's inferences. Past saturation
		// more lanes only cost memory (docs/benchmarks).
		dcfg.Lanes = min(2*runtime.NumCPU(), max(1, len(s.cfg.Cameras)))
	}
	if s.det, err = detect.New(dcfg, deps.Logger); err != nil {
		return err
	}
	if s.eng, err = engine.New(detect.Lanes(s.det), deps.Metrics.Engine, deps.Logger); err != nil {
		return err
	}
	s.people, err = addPeople(s.eng, dcfg, len(detect.Lanes(s.det)), s.cfg.Cameras, peopleShare)
	return err
}

// newCountsPath builds the Kafka publisher and the in-process exporter,
// where configured.
func (s *Service) newCountsPath(deps ServiceDeps) (err error) {
	if len(s.cfg.Kafka.Brokers) > 0 {
		key, err := s.cfg.SigningKey()
		if err != nil {
			return err
		}
		if s.pub, err = publish.New(publish.Config{Kafka: s.cfg.Kafka, SpoolDir: s.cfg.SpoolDir, SignKey: key}, publish.Deps{Logger: deps.Logger, Registerer: deps.Registry}); err != nil {
			return err
		}
	}
	if s.cfg.Exporter.Enabled {
		s.exp, err = exporter.New(exporter.Config{Kafka: s.cfg.Kafka, GroupID: s.cfg.Exporter.GroupID, SiteKeysDir: s.cfg.Exporter.SiteKeysDir},
			exporter.Deps{Logger: deps.Logger, Registerer: deps.Registry})
	}
	return err
}

// newMetricsServer binds metrics.listen: /metrics, the status page and
// /api/status, behind the bearer token and TLS when configured.
func (s *Service) newMetricsServer(deps ServiceDeps) (err error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(deps.Registry, promhttp.HandlerOpts{Registry: deps.Registry}))
	mux.Handle("/", statusHandler(deps.Registry))
	if s.ends.Metrics, err = s.listen("metrics.listen", s.cfg.Metrics.Listen, requireBearer(s.cfg.Metrics.BearerToken, mux)); err != nil {
		return err
	}
	if mt := s.cfg.Metrics.TLS; mt.Cert != "" {
		s.servers[len(s.servers)-1].tls, err = newCertReloader("metrics.tls", mt.Cert, mt.Key, s.log.With("component", "metrics"))
	}
	return err
}

// tokenGate throttles wrong bearer tokens (WHIP, view tokens) per
// address; they are audited when the console keeps an audit log (built
// later: the gate asks for it when a token is refused), logged otherwise.
func (s *Service) tokenGate() *rtcconf.Gate {
	return &rtcconf.Gate{Refused: func(kind, camera, from string, blocked bool) {
		s.log.Warn("wrong bearer token", "component", kind, "camera", camera, "from", from, "blocked", blocked)
		if s.con != nil {
			s.con.TokenRefused(kind, camera, from, blocked)
		}
	}}
}

// newConsole builds the console for the configured cameras.
func (s *Service) newConsole(deps ServiceDeps, tokens *rtcconf.Gate) (*console.Console, error) {
	cfg := s.cfg
	var cams []console.Camera
	counting := false
	for _, cam := range cfg.Cameras {
		c := console.Camera{ID: cam.ID, ViewToken: cam.ViewToken}
		if cfg.Recordings.Dir != "" {
			c.Recordings = filepath.Join(cfg.Recordings.Dir, cam.ID)
		}
		cams = append(cams, c)
		counting = counting || cam.Counted()
	}
	keep := time.Duration(0)
	if cfg.Recordings.Dir != "" {
		keep = cfg.Recordings.Keep
	}
	var where func(context.Context) ([]console.Served, error)
	if s.placer != nil {
		where = func(ctx context.Context) ([]console.Served, error) {
			ws, err := s.placer.Where(ctx)
			out := make([]console.Served, len(ws))
			for i, w := range ws {
				out[i] = console.Served{Camera: w.Camera, Box: w.Box, Console: w.Console, Here: w.Here}
			}
			return out, err
		}
	}
	return console.New(cfg.Console, console.Deps{Cameras: cams, Where: where, Editor: editor{s}, Streams: s.streams, Keep: keep, TLS: cfg.HTTP.TLS.On(), Tokens: tokens,
		Counting: counting, CountsExported: len(cfg.Kafka.Brokers) > 0,
		ConfigDigest: cfg.Digest, ICEIPs: cfg.HTTP.ICEIPs, IncludeLoopback: deps.IncludeLoopback, Logger: deps.Logger,
		Registerer: deps.Registry, Metrics: deps.Metrics.Live})
}

// newHTTPServer binds http.listen for WHIP and the console, over TLS when
// configured (a self-signed certificate made and kept if asked).
func (s *Service) newHTTPServer() (err error) {
	wmux := http.NewServeMux()
	if s.whip != nil {
		wmux.Handle("/whip/", s.whip)
	}
	if s.con != nil {
		wmux.Handle("/", s.con.Handler())
	}
	if s.ends.WHIP, err = s.listen("http.listen", s.cfg.HTTP.Listen, wmux); err != nil {
		return err
	}
	srv := s.servers[len(s.servers)-1]
	srv.stopOnShutdown = true
	files := s.cfg.HTTP.TLS
	if files.SelfSigned {
		var fp string
		if files.Cert, files.Key, fp, err = console.SelfSigned(files.Dir, console.Hosts(s.cfg.HTTP.Listen)); err != nil {
			return err
		}
		s.log.Info("console certificate is self-signed: check the browser's warning against its fingerprint", "sha256", fp, "cert", files.Cert)
	}
	if files.Cert != "" {
		srv.tls, err = newCertReloader("http.tls", files.Cert, files.Key, s.log.With("component", "http"))
	}
	return err
}

// camSlot is what a camera keeps across its runs: its configuration, its
// handles on the shared engine, its sweep phase, and its video output
// (recording and live viewers), which outlives each run.
type camSlot struct {
	cam    config.Camera
	det    blur.Detector
	people blur.Detector // nil: not counted with the detector method
	phase  float64
}

// newSlot builds what a camera keeps across runs: its engine handles and
// its stream (one encoder per camera feeds its recording and its live
// viewers).
func (s *Service) newSlot(cam config.Camera, sweepPhase float64) error {
	var rec *record.Recorder
	if s.cfg.Recordings.Dir != "" {
		var err error
		if rec, err = record.New(s.cfg.Recordings, cam.ID, s.deps.Metrics.Record, s.deps.Logger); err != nil {
			return err
		}
	}
	s.streams[cam.ID] = live.NewStream(live.StreamConfig{Camera: cam.ID, Preset: s.cfg.Recordings.Preset}, live.StreamDeps{Recorder: rec, Metrics: s.deps.Metrics.Live, Logger: s.deps.Logger})
	sl := camSlot{cam: cam, det: s.eng.For(cam.ID), phase: sweepPhase}
	if cam.Counted() && cam.Counting.Method == counter.MethodDetector {
		sl.people = s.eng.LowFor(cam.ID)
	}
	s.slots[cam.ID] = sl
	return nil
}

// newCamera builds one run of a camera: its source, and its pipeline
// around the slot's detector and stream. Each run counts with a counter of
// its own, so with a new epoch.
func (s *Service) newCamera(id string) (*Camera, error) {
	s.slotsMu.Lock()
	sl, deps := s.slots[id], s.deps
	s.slotsMu.Unlock()
	cam := sl.cam
	var src Source
	switch cam.Kind() {
	case "whip":
		src = s.whip.Source(cam.ID)
	case "file":
		pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		f, err := ingest.NewFile(pctx, ingest.FileConfig{Path: cam.File, Camera: cam.ID, Realtime: !cam.Fast, Loop: !cam.Once, MaxPixels: s.cfg.MaxFramePixels},
			ingest.FileDeps{Logger: deps.Logger, Metrics: deps.Metrics.Ingest})
		cancel()
		if err != nil {
			return nil, err
		}
		src = f
	default:
		r := &ingest.RTSP{Camera: cam.ID, URL: cam.URL, Transport: cam.Transport, MaxPixels: s.cfg.MaxFramePixels, Logger: deps.Logger, Metrics: deps.Metrics.Ingest}
		if strings.HasPrefix(cam.URL, "rtsps://") {
			var err error
			if r.TLS, err = ingest.RTSPTLS(cam.TLS.CA, cam.TLS.InsecureSkipVerify); err != nil {
				return nil, fmt.Errorf("camera %s: tls.ca: %w", cam.ID, err)
			}
		}
		src = r
	}
	// The stream outlives the run (a restart, a move to another box):
	// the run pauses it, the service closes it.
	out := pausing{s.streams[cam.ID]}
	ccfg := CameraConfig{ID: cam.ID, Site: s.cfg.Site, Blur: s.cfg.Blur, Live: !cam.Fast, Drain: cameraDrain, SweepPhase: sl.phase}
	if cam.Counted() {
		counting := cam.Counting
		ccfg.Counting = &counting
	}
	return NewCamera(ccfg, CameraDeps{Source: src, Detector: sl.det, People: sl.people, Parallel: len(detect.Lanes(s.det)), Outputs: []Output{out},
		Events: s.events, Metrics: deps.Metrics, Logger: deps.Logger})
}

// peopleShare is the most of the shared engine's time that live cameras'
// person detection may take. Faces go first in any case; the share keeps
// a CPU on which the person network is slow from spending the cores the
// faces need (measured in docs/benchmarks/2026-12-07-counting.md).
const peopleShare = 0.15

// addPeople loads the counter's person detector when a camera counts
// with the detector method, and gives it to eng as its low-priority
// network, a lane per face lane, within share of the engine's time. It
// returns nil when none does.
func addPeople(eng *engine.Engine, dcfg detect.Config, lanes int, cams []config.Camera, share float64) (detect.Detector, error) {
	need := false
	for _, c := range cams {
		need = need || c.Counted() && c.Counting.Method == counter.MethodDetector
	}
	if !need {
		return nil, nil
	}
	p, err := detect.NewPeople(dcfg, lanes)
	if err != nil {
		return nil, fmt.Errorf("counting with method detector: %w (or set method: motion)", err)
	}
	if err := eng.SetLow(detect.Lanes(p), share); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// requireBearer admits requests that carry token as a bearer token
// (Prometheus's authorization.credentials); an empty token admits all
// (loopback only, as the config's validation ensures).
func requireBearer(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rtcconf.Bearer(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="veil metrics"`)
			http.Error(w, "missing or wrong bearer token (metrics.bearer_token)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// HTTP limits of every server veil runs. No request body veil reads is
// larger than an SDP offer or a login form; a response that legitimately
// takes longer to write (a recording's download) extends its own write
// deadline.
const (
	maxRequestBody    = 1 << 20
	httpReadTimeout   = 30 * time.Second
	httpWriteTimeout  = 60 * time.Second
	httpIdleTimeout   = 2 * time.Minute
	httpHeaderTimeout = 5 * time.Second
)

func newHTTPServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{Handler: http.MaxBytesHandler(h, maxRequestBody), ReadHeaderTimeout: httpHeaderTimeout,
		ReadTimeout: httpReadTimeout, WriteTimeout: httpWriteTimeout, IdleTimeout: httpIdleTimeout, MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
}

func (s *Service) listen(key, addr string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", key, addr, err)
	}
	s.servers = append(s.servers, &server{srv: newHTTPServer(h, slog.NewLogLogger(s.log.With("component", "http", "listen", key).Handler(), slog.LevelWarn)), ln: ln})
	return ln.Addr().String(), nil
}

// Endpoints are the bound addresses.
func (s *Service) Endpoints() Endpoints { return s.ends }

// Cameras are the cameras' runs: every camera, in configuration order;
// with placement, each run this box has started, in the order started.
func (s *Service) Cameras() []*Camera {
	s.camsMu.Lock()
	defer s.camsMu.Unlock()
	return slices.Clone(s.cams)
}

// Exported is what the in-process exporter showed when it stopped, by
// camera and line: [entries, exits]. Nil without an exporter.
func (s *Service) Exported() map[string]map[string][2]int64 { return s.exported }

// release frees what NewService built when Run will not run.
func (s *Service) release() {
	if s.det != nil {
		s.det.Close()
	}
	if s.people != nil {
		s.people.Close()
	}
	if s.con != nil {
		s.con.Close()
	}
	for _, sv := range s.servers {
		sv.ln.Close()
	}
	if s.pub != nil {
		s.pub.Close()
	}
}

// Run runs the service until ctx ends or every camera's source has ended
// (files played once), then stops in order: cameras drain (frames already
// decoded are obscured, counted and recorded; the last count window is
// flushed), the counts path hands its backlog to Kafka, the exporter
// applies it, the servers close. Every step has a deadline.
func (s *Service) Run(ctx context.Context) error {
	camCtx, stopCams := context.WithCancel(ctx)
	defer stopCams()
	var g errgroup.Group
	// The engine outlives the cameras (they drain through it) and the
	// detector outlives the engine.
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engDone := make(chan struct{})
	g.Go(func() error {
		defer close(engDone)
		return s.eng.Run(engCtx)
	})
	defer func() {
		stopEngine()
		<-engDone
		s.det.Close()
		if s.people != nil {
			s.people.Close()
		}
	}()
	if p, ok := s.det.(interface {
		Prepare(context.Context, []image.Point) error
	}); ok && s.cfg.Blur.Search == blur.SearchRegions {
		// Compiled while the cameras connect; a crop that comes first waits
		// for its network as it would have anyway. A failure here is the
		// same a frame would meet, and fails that frame closed: logged only.
		g.Go(func() error {
			start := time.Now()
			if err := p.Prepare(camCtx, blur.CropSizes()); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("preparing the detector's crop networks", "component", "detect", "err", err)
			} else if err == nil {
				s.log.Info("detector's crop networks compiled", "component", "detect", "took", time.Since(start).Round(time.Millisecond))
			}
			return nil
		})
	}
	stopServers := make(chan struct{})
	for _, sv := range s.servers {
		stop := (<-chan struct{})(stopServers)
		if sv.stopOnShutdown {
			stop = camCtx.Done()
		}
		sv.run(&g, stop)
	}
	expCtx, stopExporter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopExporter()
	if s.exp != nil {
		g.Go(func() error {
			if err := s.exp.Run(expCtx); !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
	}
	if s.ret != nil {
		g.Go(func() error { return s.ret.Run(camCtx, 10*time.Second) })
	}
	countsCtx, stopCounts := afterDone(camCtx, cameraDrain+time.Second)
	defer stopCounts()
	countsDone := make(chan error, 1)
	g.Go(func() error {
		countsDone <- s.runCounts(countsCtx) // reported once, below
		return nil
	})

	camErr := s.runCameras(camCtx)
	for _, st := range s.streams {
		// Each run only paused its camera's stream: viewers end here.
		st.Close(context.Background())
	}
	stopCams()
	stopEngine()
	if s.whip != nil {
		s.whip.Close()
	}
	if s.con != nil {
		s.con.Close() // ends live sessions (audited) and closes the audit log
	}
	s.events.Close()
	countsErr := <-countsDone
	if s.exp != nil {
		s.settle()
		s.exported = s.exp.Totals()
	}
	stopExporter()
	close(stopServers)
	return errors.Join(camErr, countsErr, g.Wait())
}

// runCounts prints and publishes count events until the events queue is
// closed (every camera has flushed) or ctx ends.
func (s *Service) runCounts(ctx context.Context) error {
	var g errgroup.Group
	var toKafka *queue.Queue[footfall.Event]
	if s.pub != nil {
		toKafka = queue.New[footfall.Event](1, queue.Block, nil)
		g.Go(func() error { return s.pub.Run(ctx, toKafka, publishDrain) })
	}
	g.Go(func() error {
		if toKafka != nil {
			defer toKafka.Close()
		}
		var enc *json.Encoder
		if s.print != nil {
			enc = json.NewEncoder(s.print)
		}
		for {
			e, ok := s.events.Pop(ctx)
			if !ok {
				return nil
			}
			if s.con != nil {
				s.con.Observe(e)
			}
			if enc != nil {
				if err := enc.Encode(e); err != nil {
					return fmt.Errorf("printing count events: %w", err)
				}
			}
			if toKafka != nil {
				if err := toKafka.Push(ctx, e); err != nil {
					return fmt.Errorf("count event camera=%s epoch=%d seq=%d not spooled: %w", e.Camera, e.Epoch, e.Seq, err)
				}
			}
		}
	})
	return g.Wait()
}

// settle gives the in-process exporter a bounded time to show this
// process's crossings before it stops and lets its partitions go.
func (s *Service) settle() {
	deadline := time.Now().Add(exporterSettle)
	for time.Now().Before(deadline) && !s.caughtUp() {
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Service) caughtUp() bool {
	got := s.exp.Totals()
	want := map[string]map[string][2]int64{} // summed over a camera's runs
	for _, c := range s.Cameras() {
		src := footfall.SourceOf(s.cfg.Site, c.ID())
		if want[src] == nil {
			want[src] = map[string][2]int64{}
		}
		for _, t := range c.Summary().Crossings {
			w := want[src][t.ID]
			want[src][t.ID] = [2]int64{w[0] + int64(t.Entries), w[1] + int64(t.Exits)}
		}
	}
	for src, lines := range want {
		for line, w := range lines {
			// At least: an exporter that kept state from earlier runs shows more.
			if g := got[src][line]; g[0] < w[0] || g[1] < w[1] {
				return false
			}
		}
	}
	return true
}

// ExporterService is veil exporter on its own: the Kafka → Prometheus
// exporter and its /metrics.
type ExporterService struct {
	exp  *exporter.Exporter
	srv  *server
	addr string
}

// NewExporterService builds the exporter (cfg is validated) and binds
// listen; /metrics requires $VEIL_METRICS_TOKEN when it is set, and listen
// off loopback requires it (config.ExporterToken).
func NewExporterService(cfg exporter.Config, listen string, reg *prometheus.Registry, log *slog.Logger) (*ExporterService, error) {
	token, err := config.ExporterToken(listen, os.Getenv)
	if err != nil {
		return nil, err
	}
	exp, err := exporter.New(cfg, exporter.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("-listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", requireBearer(token, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	return &ExporterService{exp: exp, srv: &server{srv: newHTTPServer(mux, nil), ln: ln}, addr: ln.Addr().String()}, nil
}

// Addr is the bound /metrics address.
func (e *ExporterService) Addr() string { return e.addr }

// Run consumes until ctx ends, then closes the server.
func (e *ExporterService) Run(ctx context.Context) error {
	var g errgroup.Group
	stop := make(chan struct{})
	e.srv.run(&g, stop)
	err := e.exp.Run(ctx)
	close(stop)
	return errors.Join(err, g.Wait())
}

// WriteSummary says what the first camera did, and what reached the
// exporter over Kafka (veil demo prints it at the end): the two must agree.
func (s *Service) WriteSummary(w io.Writer) {
	// Summed over the camera's runs (an edit of its lines restarts it).
	var sum Summary
	lines := map[string]int{}
	for _, c := range s.Cameras() {
		if c.ID() != s.cfg.Cameras[0].ID {
			continue
		}
		r := c.Summary()
		sum.Camera = r.Camera
		sum.Frames, sum.Faces, sum.FailClosed, sum.Dropped = sum.Frames+r.Frames, sum.Faces+r.Faces, sum.FailClosed+r.FailClosed, sum.Dropped+r.Dropped
		for _, t := range r.Crossings {
			i, ok := lines[t.ID]
			if !ok {
				i = len(sum.Crossings)
				lines[t.ID] = i
				sum.Crossings = append(sum.Crossings, footfall.LineCount{ID: t.ID})
			}
			sum.Crossings[i].Entries += t.Entries
			sum.Crossings[i].Exits += t.Exits
		}
	}
	fmt.Fprintf(w, "veil demo: %d frames obscured (%d faces, %d fail-closed), %d dropped before blur; crossings:", sum.Frames, sum.Faces, sum.FailClosed, sum.Dropped)
	for _, t := range sum.Crossings {
		fmt.Fprintf(w, " %s %d in %d out;", t.ID, t.Entries, t.Exits)
	}
	fmt.Fprint(w, " exported via kafka:")
	for line, n := range s.Exported()[footfall.SourceOf(s.cfg.Site, sum.Camera)] {
		fmt.Fprintf(w, " %s %d in %d out;", line, n[0], n[1])
	}
	fmt.Fprintln(w)
}
