package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/intervalpli"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/ingest/decode"
	"github.com/veilproject/veil/queue"
	"github.com/veilproject/veil/rtcconf"
)

// WHIPCamera is a camera that a WebRTC publisher pushes to, at
// POST /whip/{ID} with "Authorization: Bearer {Token}". Its frames go to
// the queue of the camera's Source while that runs.
type WHIPCamera struct {
	ID    string
	Token string

	out atomic.Pointer[queue.Queue[*frame.Raw]]
}

// WHIP accepts WebRTC publishers (WHIP, RFC 9725) with pion/webrtc v4,
// decodes their VP8 or H.264 video and hands frames to each camera's
// queue. One publisher per camera: a new one replaces the old.
type WHIP struct {
	cfg  WHIPConfig
	deps WHIPDeps
	log  *slog.Logger

	mu       sync.Mutex
	cams     map[string]*WHIPCamera
	sessions map[string]*whipSession // by camera
	start    time.Time
	seq      map[string]*uint64
	wg       sync.WaitGroup
}

// WHIPConfig is what WHIP serves, and how.
type WHIPConfig struct {
	// Cameras are the cameras publishers may push to.
	Cameras []WHIPCamera
	// IPs, if set, limits ICE host candidates to these addresses.
	IPs []string
	// IncludeLoopback offers loopback candidates (tests between local
	// peers; browsers ignore them).
	IncludeLoopback bool
	// MaxPixels refuses larger pictures before they are allocated; 0 is
	// decode.DefaultMaxPixels (4096x2160).
	MaxPixels int
	// AllowOrigins are the web origins whose pages may publish (CORS);
	// none by default: a page open in a browser on the LAN cannot reach
	// WHIP.
	AllowOrigins []string
}

// WHIPDeps are WHIP's collaborators.
type WHIPDeps struct {
	// Tokens throttles and reports wrong bearer tokens; nil: none.
	Tokens *rtcconf.Gate
	// Replaced is told when a publisher replaces a camera's previous one
	// (the audit log); nil: only logged.
	Replaced func(camera, from string)
	Logger   *slog.Logger
	Metrics  *Metrics
}

type whipSession struct {
	id string
	pc *webrtc.PeerConnection
}

// NewWHIP serves cfg's cameras.
func NewWHIP(cfg WHIPConfig, deps WHIPDeps) *WHIP {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	w := &WHIP{cfg: cfg, deps: deps, log: deps.Logger.With("component", "whip"),
		cams: map[string]*WHIPCamera{}, sessions: map[string]*whipSession{}, seq: map[string]*uint64{}, start: time.Now()}
	for i := range cfg.Cameras {
		c := &WHIPCamera{ID: cfg.Cameras[i].ID, Token: cfg.Cameras[i].Token}
		w.cams[c.ID] = c
		w.seq[c.ID] = new(uint64)
		w.deps.Metrics.up.WithLabelValues(c.ID).Set(0)
	}
	return w
}

// ServeHTTP handles /whip/{camera} (POST an offer, OPTIONS) and
// /whip/{camera}/{session} (DELETE).
func (w *WHIP) ServeHTTP(res http.ResponseWriter, req *http.Request) {
	if o := req.Header.Get("Origin"); o != "" && slices.Contains(w.cfg.AllowOrigins, o) {
		res.Header().Set("Access-Control-Allow-Origin", o)
		res.Header().Set("Vary", "Origin")
		res.Header().Set("Access-Control-Allow-Methods", "POST, DELETE, OPTIONS")
		res.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		res.Header().Set("Access-Control-Expose-Headers", "Location")
	}
	if req.Method == http.MethodOptions {
		res.WriteHeader(http.StatusNoContent)
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(req.URL.Path, "/whip/"), "/"), "/")
	if blocked, until := w.deps.Tokens.Blocked(req); blocked {
		res.Header().Set("Retry-After", strconv.Itoa(int(time.Until(until).Seconds())+1))
		http.Error(res, "too many wrong tokens from this address; try again later", http.StatusTooManyRequests)
		return
	}
	// The token is checked before the camera is looked up, and an unknown
	// camera is refused as a wrong token is: without a token, nobody
	// learns which cameras exist.
	cam, ok := w.cams[parts[0]]
	if !ok || !rtcconf.Bearer(req, cam.Token) {
		w.deps.Tokens.Fail(req, "whip", parts[0])
		res.Header().Set("WWW-Authenticate", `Bearer realm="veil"`)
		http.Error(res, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	switch {
	case req.Method == http.MethodPost && len(parts) == 1:
		w.publish(res, req, cam)
	case req.Method == http.MethodDelete && len(parts) == 2:
		w.mu.Lock()
		s := w.sessions[cam.ID]
		if s == nil || s.id != parts[1] {
			w.mu.Unlock()
			http.Error(res, "no such session", http.StatusNotFound)
			return
		}
		delete(w.sessions, cam.ID)
		w.mu.Unlock()
		s.pc.Close()
		res.WriteHeader(http.StatusOK)
	default:
		http.Error(res, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (w *WHIP) publish(res http.ResponseWriter, req *http.Request, cam *WHIPCamera) {
	if ct := req.Header.Get("Content-Type"); ct != "application/sdp" {
		http.Error(res, "Content-Type must be application/sdp", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	if err != nil {
		http.Error(res, "reading the offer: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := rtcconf.ParseOffer(body); err != nil {
		http.Error(res, err.Error(), http.StatusBadRequest)
		return
	}
	pc, err := w.newPeerConnection()
	if err != nil {
		http.Error(res, err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		pc.Close()
		http.Error(res, err.Error(), http.StatusInternalServerError)
		return
	}
	log := w.log.With("camera", cam.ID)
	pc.OnTrack(func(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
		// RTCP must be read for the interceptors (NACK, reports, PLI) to work.
		w.wg.Add(2)
		go func() {
			defer w.wg.Done()
			for {
				if _, _, err := receiver.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		go func() {
			defer w.wg.Done()
			if track.Kind() == webrtc.RTPCodecTypeVideo {
				w.readVideo(track, cam, log)
			}
		}()
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		log.Info("publisher connection", "state", s.String())
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateDisconnected {
			pc.Close()
		}
	})
	answer, err := rtcconf.Answer(pc, string(body))
	if err != nil {
		pc.Close()
		http.Error(res, err.Error(), http.StatusBadRequest)
		return
	}
	id := rtcconf.NewID()
	w.mu.Lock()
	old := w.sessions[cam.ID]
	w.sessions[cam.ID] = &whipSession{id: id, pc: pc}
	w.mu.Unlock()
	if old != nil {
		log.Info("a new publisher replaces the previous one", "from", rtcconf.ClientIP(req))
		if w.deps.Replaced != nil {
			w.deps.Replaced(cam.ID, rtcconf.ClientIP(req))
		}
		old.pc.Close()
	}
	res.Header().Set("Content-Type", "application/sdp")
	res.Header().Set("Location", "/whip/"+cam.ID+"/"+id)
	res.WriteHeader(http.StatusCreated)
	io.WriteString(res, answer)
}

func (w *WHIP) newPeerConnection() (*webrtc.PeerConnection, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}}, PayloadType: 102},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	// One interceptor registry per PeerConnection (they keep per-connection
	// state). A PLI every 2 s asks for a keyframe until one comes and keeps
	// asking periodically, so a lost keyframe costs at most 2 s.
	ir := &interceptor.Registry{}
	pli, err := intervalpli.NewReceiverInterceptor(intervalpli.GeneratorInterval(2 * time.Second))
	if err != nil {
		return nil, err
	}
	ir.Add(pli)
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	se := rtcconf.SettingEngine(w.cfg.IPs, w.cfg.IncludeLoopback)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return api.NewPeerConnection(webrtc.Configuration{})
}

// readVideo depacketizes, waits for a keyframe, decodes and pushes frames.
func (w *WHIP) readVideo(track *webrtc.TrackRemote, cam *WHIPCamera, log *slog.Logger) {
	mime := strings.ToLower(track.Codec().MimeType)
	var depack rtp.Depacketizer
	codec := decode.CodecVP8
	switch mime {
	case strings.ToLower(webrtc.MimeTypeVP8):
		depack = &codecs.VP8Packet{}
	case strings.ToLower(webrtc.MimeTypeH264):
		depack = &codecs.H264Packet{}
		codec = decode.CodecH264
	default:
		log.Error("unsupported codec", "codec", mime)
		return
	}
	dec, err := decode.New(codec, w.cfg.MaxPixels)
	if err != nil {
		log.Error("decoder", "err", err)
		return
	}
	defer dec.Close()
	log.Info("publisher track", "codec", mime)
	sb := samplebuilder.New(64, depack, track.Codec().ClockRate)
	up := w.deps.Metrics.up.WithLabelValues(cam.ID)
	defer up.Set(0)
	received := w.deps.Metrics.received.WithLabelValues(cam.ID)
	decoded := w.deps.Metrics.decoded.WithLabelValues(cam.ID)
	decodeTime := w.deps.Metrics.decodeTime.WithLabelValues(cam.ID)
	awaitKey := w.deps.Metrics.dropped.WithLabelValues(cam.ID, DropAwaitKeyframe)
	corrupt := w.deps.Metrics.dropped.WithLabelValues(cam.ID, DropCorrupt)
	info := w.deps.Metrics.stream(cam.ID, codec.String(), log)
	defer info.down()
	var units int64
	gotKey := false
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			received.Inc()
			units++
			if !gotKey {
				if !isKeyframe(codec, s.Data) {
					awaitKey.Inc()
					continue
				}
				gotKey = true
			}
			var raw *frame.Raw
			t0 := time.Now()
			ok, err := dec.Decode(s.Data, func(width, height int) []byte {
				now := time.Now()
				info.frame(width, height, units, now)
				raw = frame.Reuse(frame.Meta{Camera: cam.ID, PTS: now.Sub(w.start), Captured: now}, width, height)
				return raw.Pix
			})
			decodeTime.Observe(time.Since(t0).Seconds())
			if ok {
				w.mu.Lock()
				seq := w.seq[cam.ID]
				raw.Seq = *seq
				*seq++
				w.mu.Unlock()
				decoded.Inc()
				up.Set(1)
				if out := cam.out.Load(); out != nil {
					out.Push(context.Background(), raw) // DropOldest: never blocks
				}
			}
			if err != nil {
				corrupt.Inc() // also a picture above MaxPixels, refused by the decoder
			}
		}
	}
}

// isKeyframe: VP8's P bit (RFC 6386: 0 = key frame); H.264 an IDR NAL.
func isKeyframe(c decode.Codec, b []byte) bool {
	if c == decode.CodecVP8 {
		return len(b) > 0 && b[0]&0x01 == 0
	}
	for i := 0; i+3 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 && b[i+3]&0x1f == 5 {
			return true
		}
	}
	return false
}

// WHIPSource is one WHIP camera as a source: while it runs, the frames
// that camera's publisher sends go to its queue.
type WHIPSource struct {
	w   *WHIP
	cam *WHIPCamera
}

// Source is the camera's source; nil for an unknown camera.
func (w *WHIP) Source(camera string) *WHIPSource {
	cam, ok := w.cams[camera]
	if !ok {
		return nil
	}
	return &WHIPSource{w: w, cam: cam}
}

// Run hands the camera's frames to out until ctx ends; then it ends the
// camera's session, waits for its reader and closes out. out must drop
// rather than block (queue.DropOldest): the reader is a network reader.
func (s *WHIPSource) Run(ctx context.Context, out *queue.Queue[*frame.Raw]) error {
	if !s.cam.out.CompareAndSwap(nil, out) {
		out.Close()
		return fmt.Errorf("whip: camera %s already has a running source", s.cam.ID)
	}
	<-ctx.Done()
	s.w.mu.Lock()
	sess := s.w.sessions[s.cam.ID]
	delete(s.w.sessions, s.cam.ID)
	s.w.mu.Unlock()
	if sess != nil {
		sess.pc.Close()
	}
	s.cam.out.Store(nil)
	out.Close()
	return ctx.Err()
}

// Close ends every session and waits for their readers.
func (w *WHIP) Close() {
	w.mu.Lock()
	sessions := w.sessions
	w.sessions = map[string]*whipSession{}
	w.mu.Unlock()
	for _, s := range sessions {
		s.pc.Close()
	}
	w.wg.Wait()
}
