// Package live encodes each camera's obscured frames once and fans the one
// H.264 stream out: to the camera's recording segments and to every live
// viewer (WHEP, WebRTC). No viewer costs an encode; a slow viewer costs
// only its own packets, and recording never waits for a viewer.
//
// Only obscured frames can reach the encoder: Stream takes *blur.Frame,
// which only the blur stage makes.
package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/pipeline/output/encode"
	"github.com/veilproject/veil/pipeline/output/record"
)

// Metrics are the live view's series.
type Metrics struct {
	viewers  *prometheus.GaugeVec
	sessions *prometheus.CounterVec
	refused  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	encoded  *prometheus.CounterVec
	encode   *prometheus.HistogramVec
}

// NewMetrics registers the live view's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		viewers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "veil_live_viewers",
			Help: "Live viewers (WHEP sessions) watching the camera now."}, []string{"camera"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_live_sessions_total",
			Help: "Live view sessions started."}, []string{"camera"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_live_refused_total",
			Help: "Live view requests refused, by reason: unauthorized, bad_offer, unknown_camera, camera_limit, total_limit, viewer_limit (one user's or token's views), unrecorded (the audit log could not be written)."}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_live_packets_dropped_total",
			Help: "Encoded pictures not sent to a viewer that was behind (it resumes at the next keyframe)."}, []string{"camera"}),
		encoded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_live_frames_encoded_total",
			Help: "Obscured frames encoded (once for the recording and every viewer)."}, []string{"camera"}),
		encode: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "veil_live_encode_duration_seconds",
			Help:    "Time to convert and encode one obscured frame (x264, one thread): the recording's and live view's CPU.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 10)}, []string{"camera"}),
	}
	for _, c := range []prometheus.Collector{m.viewers, m.sessions, m.refused, m.dropped, m.encoded, m.encode} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{RefusedUnauthorized, RefusedBadOffer, RefusedUnknownCamera, RefusedCameraLimit, RefusedTotalLimit, RefusedViewerLimit, RefusedUnrecorded} {
		m.refused.WithLabelValues(r)
	}
	return m, nil
}

// Reasons for veil_live_refused_total.
const (
	RefusedUnauthorized  = "unauthorized"
	RefusedBadOffer      = "bad_offer"
	RefusedUnknownCamera = "unknown_camera"
	RefusedCameraLimit   = "camera_limit"
	RefusedTotalLimit    = "total_limit"
	RefusedViewerLimit   = "viewer_limit"
	RefusedUnrecorded    = "unrecorded"
)

// Unit is what a viewer gets: one encoded picture, and with a keyframe the
// parameter sets to put in front of it.
type Unit struct {
	encode.Packet
	Params []byte // SPS and PPS (Annex-B) on a keyframe, else nil
}

// subBuffer is how many pictures a feed may be behind before it loses
// some: about 2 s at 15 fps.
const subBuffer = 32

// Sub is a feed of the stream's pictures (the WebRTC track that every
// viewer of the camera shares). Its channel is closed when it is removed
// or the stream closes.
type Sub struct {
	C       <-chan Unit
	c       chan Unit
	needKey bool // behind: skip until the next keyframe
}

// Stream is one camera's video output: it encodes each obscured frame once
// (only while something consumes it) and hands the packets to the
// recorder and to every viewer.
type Stream struct {
	camera string
	preset string
	rec    *record.Recorder // nil: not recorded
	m      *Metrics
	log    *slog.Logger

	enc *encode.Encoder

	mu   sync.Mutex
	subs map[*Sub]struct{}
	// keyReq is set when a viewer needs a keyframe; the encoder is only
	// touched from Write's goroutine.
	keyReq bool
	closed bool
	// lastKey is when a keyframe was last forced: requests (a join, a
	// viewer's PLI or FIR) within keyframeGap of it wait for the gap to
	// pass, so viewers cannot make the shared encoder, and with it the
	// recording, all keyframes.
	lastKey time.Time
}

// keyframeGap is the least time between forced keyframes.
const keyframeGap = time.Second

// StreamConfig is one camera's video output.
type StreamConfig struct {
	Camera string
	// Preset is libx264's; empty: the recorder's.
	Preset string
}

// StreamDeps are a stream's collaborators. Recorder may be nil (no
// recordings); then frames are encoded only while someone watches.
type StreamDeps struct {
	Recorder *record.Recorder
	Metrics  *Metrics
	Logger   *slog.Logger
}

// NewStream is a camera's video output: its recording and live view.
func NewStream(cfg StreamConfig, deps StreamDeps) *Stream {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	preset := cfg.Preset
	if deps.Recorder != nil && preset == "" {
		preset = deps.Recorder.Preset()
	}
	deps.Metrics.viewers.WithLabelValues(cfg.Camera)
	return &Stream{camera: cfg.Camera, preset: preset, rec: deps.Recorder, m: deps.Metrics, log: log.With("component", "live", "camera", cfg.Camera), subs: map[*Sub]struct{}{}}
}

// Camera is the camera's id.
func (s *Stream) Camera() string { return s.camera }

// Name labels the output in metrics.
func (s *Stream) Name() string { return "video" }

// Write encodes f (if anything consumes it) and fans the packets out.
func (s *Stream) Write(f *blur.Frame) error {
	s.mu.Lock()
	watched, keyReq := len(s.subs) > 0, s.keyReq && time.Since(s.lastKey) >= keyframeGap
	if keyReq {
		s.keyReq, s.lastKey = false, time.Now()
	}
	s.mu.Unlock()
	if s.rec == nil && !watched {
		if s.enc != nil { // the last viewer left: stop encoding
			s.enc.Free()
			s.enc = nil
		}
		return nil
	}
	if s.enc != nil {
		if w, h := s.enc.Size(); w != f.Width() || h != f.Height() {
			s.finish(context.Background())
		}
	}
	if s.enc == nil {
		enc, err := encode.NewEncoder(encode.Options{Width: f.Width(), Height: f.Height(), Preset: s.preset})
		if err != nil {
			return fmt.Errorf("live %s: %w", s.camera, err)
		}
		s.enc = enc
	}
	if keyReq {
		s.enc.RequestKeyframe()
	}
	t0 := time.Now()
	pkts, err := s.enc.Encode(f)
	if err != nil {
		return fmt.Errorf("live %s: %w", s.camera, err)
	}
	s.m.encode.WithLabelValues(s.camera).Observe(time.Since(t0).Seconds())
	s.m.encoded.WithLabelValues(s.camera).Inc()
	s.deliver(pkts, f.Meta().Captured)
	return nil
}

// finish hands on the encoder's last packets (unless ctx has ended),
// frees the encoder and finishes the recording's segment (abandoned if ctx
// has ended): at a size change, and at Close.
func (s *Stream) finish(ctx context.Context) error {
	if s.enc != nil {
		pkts, err := s.enc.Flush()
		if err != nil {
			s.log.Error("flushing the encoder", "err", err)
		}
		if ctx.Err() == nil {
			s.deliver(pkts, time.Now())
		}
		s.enc.Free()
		s.enc = nil
	}
	if s.rec != nil {
		return s.rec.Close(ctx)
	}
	return nil
}

func (s *Stream) deliver(pkts []encode.Packet, captured time.Time) {
	for _, p := range pkts {
		if s.rec != nil {
			s.rec.Write(s.enc, p, captured)
		}
		u := Unit{Packet: p}
		if p.Key {
			u.Params = s.enc.Extradata()
		}
		s.mu.Lock()
		for sub := range s.subs {
			if sub.needKey && !p.Key {
				continue
			}
			select {
			case sub.c <- u:
				sub.needKey = false
			default:
				// Behind: this picture is lost to the viewer, and so is
				// everything until a keyframe, which is asked for now.
				s.m.dropped.WithLabelValues(s.camera).Inc()
				sub.needKey, s.keyReq = true, true
			}
		}
		s.mu.Unlock()
	}
}

// ErrClosed is returned by Subscribe after the stream closed.
var ErrClosed = errors.New("live: stream closed")

// Subscribe adds a viewer. Its first picture is a keyframe, asked for now.
func (s *Stream) Subscribe() (*Sub, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	c := make(chan Unit, subBuffer)
	sub := &Sub{C: c, c: c, needKey: true}
	s.subs[sub] = struct{}{}
	s.keyReq = true
	return sub, nil
}

// Unsubscribe removes a viewer and closes its channel. Safe to call twice.
func (s *Stream) Unsubscribe(sub *Sub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.c)
	}
}

// RequestKeyframe asks for a keyframe soon (a viewer lost pictures).
func (s *Stream) RequestKeyframe() {
	s.mu.Lock()
	s.keyReq = true
	s.mu.Unlock()
}

// Pause ends one run of the camera on this box (placement moved the
// camera to another box): the encoder's last packets go to the recording
// and the viewers, and the segment is finished (abandoned if ctx has
// ended). Viewers stay subscribed: the pictures resume if the camera
// comes back. Write may be called again after it.
func (s *Stream) Pause(ctx context.Context) error { return s.finish(ctx) }

// Close flushes the encoder into the recording, finishes its segment (or
// abandons it if ctx has ended) and ends every viewer's feed.
func (s *Stream) Close(ctx context.Context) error {
	err := s.finish(ctx)
	s.mu.Lock()
	s.closed = true
	for sub := range s.subs {
		delete(s.subs, sub)
		close(sub.c)
	}
	s.mu.Unlock()
	return err
}
