package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/ingest/decode"
	"github.com/veilproject/veil/pipeline/frame"
	"github.com/veilproject/veil/pipeline/queue"
)

// Metrics are the per-camera ingest series.
type Metrics struct {
	up         *prometheus.GaugeVec
	reconnects *prometheus.CounterVec
	received   *prometheus.CounterVec
	decoded    *prometheus.CounterVec
	dropped    *prometheus.CounterVec
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
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_ingest_access_units_dropped_total",
			Help: "Compressed frames not decoded, by reason: await_keyframe, decode_queue_full, corrupt."}, []string{"camera", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.up, m.reconnects, m.received, m.decoded, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// RTSP pulls H.264 from an RTSP camera, decodes it and hands frames to the
// blur stage's queue. It reconnects for ever: after a failure it waits with
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
	// StallTimeout ends a session that delivers no packet for this long.
	// It defaults to 5s.
	StallTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
}

// Redact hides the password of an RTSP URL.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
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
	down := true
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
				down = true
				continue
			}
			c.Close()
			if down {
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
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host, ReadTimeout: r.StallTimeout, WriteTimeout: r.StallTimeout}
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
	var forma *format.H264
	medi := desc.FindFormat(&forma)
	if medi == nil {
		return false, errors.New("the stream has no H.264 video track")
	}
	sps, pps := forma.SafeParams()
	rtpDec, err := forma.CreateDecoder()
	if err != nil {
		return false, err
	}
	if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		return false, fmt.Errorf("setup: %w", err)
	}
	dec, err := decode.New(decode.CodecH264, r.MaxPixels)
	if err != nil {
		return false, err
	}
	defer dec.Close()

	received := r.Metrics.received.WithLabelValues(r.Camera)
	dropped := func(reason string) prometheus.Counter { return r.Metrics.dropped.WithLabelValues(r.Camera, reason) }
	decoded := r.Metrics.decoded.WithLabelValues(r.Camera)

	// The packet callback runs on gortsplib's reader goroutine: it only
	// depacketizes and hands access units to a bounded channel. On overflow
	// the unit is dropped (counted) and decoding resumes at the next
	// keyframe, since later frames depend on the lost one.
	aus := make(chan [][]byte, 8)
	done := make(chan struct{})
	var gotIDR bool
	c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		au, err := rtpDec.Decode(pkt)
		if err != nil {
			if !errors.Is(err, rtph264.ErrMorePacketsNeeded) && !errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious) {
				dropped(DropCorrupt).Inc()
			}
			return
		}
		received.Inc()
		if !gotIDR {
			if !h264.IsRandomAccess(au) {
				dropped(DropAwaitKeyframe).Inc()
				return
			}
			gotIDR = true
		}
		select {
		case aus <- au:
		default:
			dropped(DropDecodeQueue).Inc()
			gotIDR = false
		}
	})
	if _, err := c.Play(nil); err != nil {
		return false, fmt.Errorf("play: %w", err)
	}
	log.Info("camera connected", "transport", r.Transport)

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
			if h264.IsRandomAccess(au) && !hasNALU(au, h264.NALUTypeSPS) && sps != nil && pps != nil {
				au = append([][]byte{sps, pps}, au...)
			}
			annexB, err := h264.AnnexB(au).Marshal()
			if err != nil {
				dropped(DropCorrupt).Inc()
				continue
			}
			_, err = dec.Decode(annexB, func(w, h int, bgr []byte) {
				now := time.Now()
				raw := frame.NewRaw(frame.Meta{Camera: r.Camera, Seq: *seq, PTS: now.Sub(start), Captured: now}, w, h)
				copy(raw.Pix, bgr)
				*seq++
				decoded.Inc()
				if !decodedAny {
					decodedAny = true
					up.Set(1)
				}
				out.Push(ctx, raw) // DropOldest: never blocks
			})
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

func hasNALU(au [][]byte, typ h264.NALUType) bool {
	for _, n := range au {
		if len(n) > 0 && h264.NALUType(n[0]&0x1f) == typ {
			return true
		}
	}
	return false
}
