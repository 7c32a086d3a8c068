package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/ingest/decode"
	"github.com/veilproject/veil/queue"
)

// Metrics are the per-camera ingest series.
type Metrics struct {
	up         *prometheus.GaugeVec
	reconnects *prometheus.CounterVec
	received   *prometheus.CounterVec
	decoded    *prometheus.CounterVec
	decodeTime *prometheus.HistogramVec
	dropped    *prometheus.CounterVec
	info       *prometheus.GaugeVec
}

// Decoded is the decoded-frames counter of one camera, for sources that
// count outside this package's sources.
func (m *Metrics) Decoded(camera string) prometheus.Counter { return m.decoded.WithLabelValues(camera) }

// Up is the up gauge of one camera.
func (m *Metrics) Up(camera string) prometheus.Gauge { return m.up.WithLabelValues(camera) }

// Drop reasons for veil_ingest_access_units_dropped_total.
const (
	DropAwaitKeyframe = "await_keyframe" // before the first keyframe, or after a loss, until the next
	DropDecodeQueue   = "decode_queue_full"
	DropCorrupt       = "corrupt"
)

// NewMetrics creates and registers the ingest metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "veil_camera_up",
			Help: "1 while the camera's stream is being received."}, []string{"camera"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_ingest_reconnects_total",
			Help: "Sessions to the camera that ended or failed and were retried."}, []string{"camera"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_ingest_access_units_total",
			Help: "Compressed frames (access units) received from the camera."}, []string{"camera"}),
		decoded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_ingest_frames_decoded_total",
			Help: "Frames decoded from a source."}, []string{"camera"}),
		decodeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "veil_ingest_decode_duration_seconds",
			Help:    "Time to decode one compressed frame into a picture (to BGR) in veil's process, on one core: the decoding stage's CPU. A file camera decodes in an ffmpeg process and stays at zero.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 10)}, []string{"camera"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_ingest_access_units_dropped_total",
			Help: "Compressed frames not decoded, by reason: await_keyframe, decode_queue_full, corrupt."}, []string{"camera", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.up, m.reconnects, m.received, m.decoded, m.decodeTime, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	var err error
	m.info, err = newStreamInfoVec(reg)
	return m, err
}

// RTSP pulls H.264, H.265 or MJPEG from an RTSP or RTSPS camera, decodes
// it and hands frames to the blur stage's queue. Credentials in the URL
// answer Basic or Digest authentication, whichever the camera asks for. It reconnects for ever: after a failure it waits with
// exponential backoff (1 s doubling to 30 s, +-20% jitter), but probes the
// camera's port every second meanwhile, so that a camera that comes back is
// pulled again within about a second, not at the end of a long backoff.
type RTSP struct {
	// Camera is the configured id.
	Camera string
	// URL is rtsp://[user:pass@]host[:port]/path. Credentials are never
	// logged.
	URL string
	// Transport is tcp (default), udp or auto (UDP, falling back to TCP).
	Transport string
	// MaxPixels refuses larger pictures before they are allocated (counted
	// as corrupt); 0 is decode.DefaultMaxPixels (4096x2160).
	MaxPixels int
	// TLS verifies an rtsps:// camera (RTSPTLS builds it); nil trusts the
	// system's roots.
	TLS *tls.Config
	// StallTimeout ends a session that delivers no packet for this long.
	// It defaults to 5s.
	StallTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics

	// portDown: a probe found the camera's port refusing. Only a port seen
	// refusing and then accepting cuts a backoff short (across waits, since
	// it may come back just as one wait ends and the next begins); a camera
	// that accepts connections but fails the session (a wrong password, an
	// untrusted certificate) waits out its backoff.
	portDown bool
}

// Redact hides the password of an RTSP URL.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// RTSPTLS is the TLS configuration for an rtsps:// camera: trust the
// certificates of the PEM file ca (a private CA, or the camera's own
// self-signed certificate) instead of the system's roots, or, with
// insecure, any certificate at all.
func RTSPTLS(ca string, insecure bool) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", ca)
		}
	}
	return c, nil
}

// Run pulls until ctx ends, then closes out.
func (r *RTSP) Run(ctx context.Context, out *queue.Queue[*frame.Raw]) error {
	defer out.Close()
	if r.StallTimeout == 0 {
		r.StallTimeout = 5 * time.Second
	}
	if r.Transport == "" {
		r.Transport = "tcp"
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "ingest", "camera", r.Camera, "url", Redact(r.URL))
	up := r.Metrics.up.WithLabelValues(r.Camera)
	reconnects := r.Metrics.reconnects.WithLabelValues(r.Camera)
	for _, reason := range []string{DropAwaitKeyframe, DropDecodeQueue, DropCorrupt} {
		r.Metrics.dropped.WithLabelValues(r.Camera, reason)
	}
	if r.TLS != nil && r.TLS.InsecureSkipVerify {
		log.Warn("camera certificate not verified (insecure_skip_verify): anyone on the path can impersonate this camera and read its video")
	}
	up.Set(0)
	start := time.Now()
	var seq uint64
	backoff := time.Second
	failures := 0
	for {
		got, err := r.session(ctx, out, start, &seq, up, log)
		up.Set(0)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		reconnects.Inc()
		if got {
			backoff, failures = time.Second, 0
			log.Warn("camera stream ended; reconnecting", "err", err)
		} else {
			failures++
			if failures == 1 || failures%10 == 0 {
				log.Error("camera unreachable; retrying with backoff", "err", err, "attempts", failures, "backoff", backoff)
			}
		}
		wait := backoff + time.Duration((rand.Float64()*0.4-0.2)*float64(backoff))
		if !r.waitOrProbe(ctx, wait) {
			return ctx.Err()
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// waitOrProbe sleeps d, returning early when the camera's port accepts a
// TCP connection (it is back). False when ctx ended.
func (r *RTSP) waitOrProbe(ctx context.Context, d time.Duration) bool {
	u, err := base.ParseURL(r.URL)
	host := ""
	if err == nil {
		host = u.Host
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, "554")
		}
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-tick.C:
			if host == "" {
				continue
			}
			c, err := net.DialTimeout("tcp", host, 500*time.Millisecond)
			if err != nil {
				r.portDown = true
				continue
			}
			c.Close()
			if r.portDown {
				r.portDown = false
				return true // it was refusing and now accepts: try at once
			}
		}
	}
}

// session runs one RTSP session until it fails. got reports whether any
// frame was decoded.
func (r *RTSP) session(ctx context.Context, out *queue.Queue[*frame.Raw], start time.Time, seq *uint64, up prometheus.Gauge, log *slog.Logger) (got bool, err error) {
	u, err := base.ParseURL(r.URL)
	if err != nil {
		return false, fmt.Errorf("camera %s: bad url %s: %w", r.Camera, Redact(r.URL), err)
	}
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host, TLSConfig: r.TLS, ReadTimeout: r.StallTimeout, WriteTimeout: r.StallTimeout}
	switch r.Transport {
	case "udp":
		p := gortsplib.ProtocolUDP
		c.Protocol = &p
	case "auto":
	default:
		p := gortsplib.ProtocolTCP
		c.Protocol = &p
	}
	if err := c.Start(); err != nil {
		return false, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	desc, _, err := c.Describe(u)
	if err != nil {
		return false, fmt.Errorf("describe: %w", err)
	}
	tr, err := pickTrack(desc)
	if err != nil {
		return false, err
	}
	if _, err := c.Setup(desc.BaseURL, tr.medi, 0, 0); err != nil {
		return false, fmt.Errorf("setup: %w", err)
	}
	dec, err := decode.New(tr.codec, r.MaxPixels)
	if err != nil {
		return false, err
	}
	defer dec.Close()

	received := r.Metrics.received.WithLabelValues(r.Camera)
	dropped := func(reason string) prometheus.Counter { return r.Metrics.dropped.WithLabelValues(r.Camera, reason) }
	decoded := r.Metrics.decoded.WithLabelValues(r.Camera)
	decodeTime := r.Metrics.decodeTime.WithLabelValues(r.Camera)

	// The packet callback runs on gortsplib's reader goroutine: it only
	// depacketizes and hands units to a bounded channel. On overflow the
	// unit is dropped (counted) and decoding resumes at the next keyframe,
	// since later frames depend on the lost one.
	aus := make(chan [][]byte, 8)
	done := make(chan struct{})
	var gotKey bool
	var units atomic.Int64
	c.OnPacketRTP(tr.medi, tr.forma, func(pkt *rtp.Packet) {
		au, err := tr.depacketize(pkt)
		if err != nil {
			if !errors.Is(err, errMore) {
				dropped(DropCorrupt).Inc()
			}
			return
		}
		received.Inc()
		units.Add(1)
		if !gotKey {
			if !tr.keyframe(au) {
				dropped(DropAwaitKeyframe).Inc()
				return
			}
			gotKey = true
		}
		select {
		case aus <- au:
		default:
			dropped(DropDecodeQueue).Inc()
			gotKey = false
		}
	})
	if _, err := c.Play(nil); err != nil {
		return false, fmt.Errorf("play: %w", err)
	}
	log.Info("camera connected", "transport", r.Transport, "codec", tr.codec.String())

	info := r.Metrics.stream(r.Camera, tr.codec.String(), log)
	defer info.down()
	var wg sync.WaitGroup
	var decodedAny bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var au [][]byte
			select {
			case au = <-aus:
			case <-done:
				return
			}
			bs, err := tr.bitstream(au)
			if err != nil {
				dropped(DropCorrupt).Inc()
				continue
			}
			var raw *frame.Raw
			t0 := time.Now()
			ok, err := dec.Decode(bs, func(w, h int) []byte {
				now := time.Now()
				info.frame(w, h, units.Load(), now)
				raw = frame.Reuse(frame.Meta{Camera: r.Camera, Seq: *seq, PTS: now.Sub(start), Captured: now}, w, h)
				return raw.Pix
			})
			decodeTime.Observe(time.Since(t0).Seconds())
			if ok {
				*seq++
				decoded.Inc()
				if !decodedAny {
					decodedAny = true
					up.Set(1)
				}
				out.Push(ctx, raw) // DropOldest: never blocks
			}
			if err != nil {
				dropped(DropCorrupt).Inc()
			}
		}
	}()
	err = c.Wait()
	close(done)
	wg.Wait()
	return decodedAny, err
}
