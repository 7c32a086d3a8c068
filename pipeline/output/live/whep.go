package live

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/veilproject/veil/rtcconf"
)

// Viewer is who watches, as the console's authorization names them.
type Viewer struct {
	Who  string // a user name, or "token:{camera}" for a camera's view token
	From string // the client's address
	// Login identifies the console login the view belongs to (empty for a
	// view token), so that logging out ends its views.
	Login string
	// Until ends the view when the login expires; zero: no end.
	Until time.Time
}

// SessionEvent reports a live view that ended, for the audit log.
type SessionEvent struct {
	Viewer
	Camera     string
	Start, End time.Time
}

// WHEP serves live viewers over WebRTC (WHEP, draft-ietf-wish-whep):
// POST /whep/{camera} with an SDP offer is answered 201 with the answer
// and a Location; DELETE on that Location ends the session. Every viewer
// of a camera gets the camera's one encoded stream.
type WHEP struct {
	// Streams are the cameras that can be watched.
	Streams map[string]*Stream
	// Authorize says who the request is from, or false (401). It must
	// check the camera's view token or the console session (with its CSRF
	// header).
	Authorize func(r *http.Request, camera string) (Viewer, bool)
	// MaxPerCamera and MaxTotal bound the viewers (default 10 and 40);
	// MaxPerViewer bounds the views of one user or token (default 4), so
	// one of them cannot take every slot.
	MaxPerCamera, MaxTotal, MaxPerViewer int
	// IPs, if set, limits ICE host candidates to these addresses.
	IPs []string
	// IncludeLoopback offers loopback candidates (tests between local
	// peers; browsers ignore them).
	IncludeLoopback bool
	// Tokens throttles and reports wrong bearer tokens; nil: none.
	Tokens *rtcconf.Gate
	// Started is called when a viewer is admitted, before any picture is
	// sent (the audit log); an error refuses the view.
	Started func(SessionEvent) error
	// Ended is called when a session ends (the audit log).
	Ended   func(SessionEvent)
	Logger  *slog.Logger
	Metrics *Metrics

	mu       sync.Mutex
	sessions map[string]*session // by id
	feeds    map[string]*feed    // by camera, while watched
	viewers  int                 // in all feeds
	byWho    map[string]int      // views, by Viewer.Who
	wg       sync.WaitGroup
}

type session struct {
	id, camera string
	viewer     Viewer
	pc         *webrtc.PeerConnection
	start      time.Time
	once       sync.Once
	expiry     *time.Timer
}

// feed is one camera's WebRTC track, shared by all its viewers: each
// picture is packetized once and the packets go to every viewer's
// connection (each encrypts its own). A viewer that joins gets a keyframe
// soon, asked for when it joins.
type feed struct {
	track   *webrtc.TrackLocalStaticSample
	sub     *Sub
	viewers int
}

func (w *WHEP) refuse(res http.ResponseWriter, reason, msg string, code int) {
	w.Metrics.refused.WithLabelValues(reason).Inc()
	http.Error(res, msg, code)
}

// ServeHTTP handles /whep/{camera} and /whep/{camera}/{session}.
func (w *WHEP) ServeHTTP(res http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(req.URL.Path, "/whep/"), "/"), "/")
	camera := parts[0]
	bearer := req.Header.Get("Authorization") != ""
	if blocked, until := w.Tokens.Blocked(req); blocked && bearer {
		res.Header().Set("Retry-After", strconv.Itoa(int(time.Until(until).Seconds())+1))
		w.refuse(res, RefusedUnauthorized, "too many wrong tokens from this address; try again later", http.StatusTooManyRequests)
		return
	}
	who, ok := w.Authorize(req, camera)
	if !ok {
		if bearer {
			w.Tokens.Fail(req, "whep", camera)
		}
		res.Header().Set("WWW-Authenticate", `Bearer realm="veil"`)
		w.refuse(res, RefusedUnauthorized, "log in, or give the camera's view token as a bearer token", http.StatusUnauthorized)
		return
	}
	st, ok := w.Streams[camera]
	if !ok {
		w.refuse(res, RefusedUnknownCamera, "no such camera", http.StatusNotFound)
		return
	}
	switch {
	case req.Method == http.MethodPost && len(parts) == 1:
		w.view(res, req, st, who)
	case req.Method == http.MethodDelete && len(parts) == 2:
		w.mu.Lock()
		s := w.sessions[parts[1]]
		w.mu.Unlock()
		if s == nil || s.camera != camera {
			http.Error(res, "no such session", http.StatusNotFound)
			return
		}
		if s.viewer.Who != who.Who {
			http.Error(res, "not your session", http.StatusForbidden)
			return
		}
		w.end(s)
		res.WriteHeader(http.StatusOK)
	default:
		http.Error(res, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (w *WHEP) view(res http.ResponseWriter, req *http.Request, st *Stream, who Viewer) {
	if ct := req.Header.Get("Content-Type"); ct != "application/sdp" {
		w.refuse(res, RefusedBadOffer, "Content-Type must be application/sdp", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	if err == nil {
		err = rtcconf.ParseOffer(body)
	}
	if err != nil {
		w.refuse(res, RefusedBadOffer, err.Error(), http.StatusBadRequest)
		return
	}
	f, err := w.join(st, who.Who)
	if err != nil {
		var l limitError
		if errors.As(err, &l) {
			w.refuse(res, l.reason, err.Error(), http.StatusServiceUnavailable)
			return
		}
		http.Error(res, err.Error(), http.StatusServiceUnavailable)
		return
	}
	s := &session{id: rtcconf.NewID(), camera: st.Camera(), viewer: who, start: time.Now()}
	pc, sender, err := w.newPeerConnection(f.track)
	if err != nil {
		w.leave(st, who.Who)
		http.Error(res, err.Error(), http.StatusInternalServerError)
		return
	}
	s.pc = pc
	fail := func(reason, msg string, code int) {
		pc.Close()
		w.leave(st, who.Who)
		w.refuse(res, reason, msg, code)
	}
	answer, err := rtcconf.Answer(pc, string(body))
	if err != nil {
		fail(RefusedBadOffer, err.Error(), http.StatusBadRequest)
		return
	}
	if w.Started != nil {
		if err := w.Started(SessionEvent{Viewer: who, Camera: s.camera, Start: s.start}); err != nil {
			w.Logger.Error("live view refused: its start could not be recorded", "component", "whep", "camera", s.camera, "err", err)
			fail(RefusedUnrecorded, "the view could not be recorded in the audit log; ask the administrator", http.StatusServiceUnavailable)
			return
		}
	}
	w.mu.Lock()
	w.sessions[s.id] = s
	if !who.Until.IsZero() {
		s.expiry = time.AfterFunc(time.Until(who.Until), func() { w.end(s) })
	}
	w.mu.Unlock()
	w.Metrics.sessions.WithLabelValues(s.camera).Inc()
	st.RequestKeyframe()
	log := w.Logger.With("component", "whep", "camera", s.camera, "viewer", who.Who, "session", s.id)
	log.Info("live view started", "from", who.From)
	pc.OnConnectionStateChange(func(cs webrtc.PeerConnectionState) {
		switch cs {
		case webrtc.PeerConnectionStateConnected:
			st.RequestKeyframe() // its first picture: what came before it missed
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateClosed:
			go w.end(s)
		}
	})
	w.wg.Add(1)
	go func() { // RTCP: the interceptors need it read; PLI and FIR ask for a keyframe
		defer w.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					st.RequestKeyframe()
				}
			}
		}
	}()
	res.Header().Set("Content-Type", "application/sdp")
	res.Header().Set("Location", "/whep/"+s.camera+"/"+s.id)
	res.WriteHeader(http.StatusCreated)
	io.WriteString(res, answer)
}

// limitError refuses a viewer over a limit; reason is the metric's.
type limitError struct {
	reason, msg string
}

func (e limitError) Error() string { return e.msg }

// join counts a viewer of st, starting its feed for the first one, or
// refuses it over the per-camera or total limit. The limits are checked
// and the viewer counted under one lock, so viewers arriving together
// cannot pass a limit between them.
func (w *WHEP) join(st *Stream, who string) (*feed, error) {
	maxCam, maxAll, maxWho := w.MaxPerCamera, w.MaxTotal, w.MaxPerViewer
	if maxCam <= 0 {
		maxCam = 10
	}
	if maxAll <= 0 {
		maxAll = 40
	}
	if maxWho <= 0 {
		maxWho = 4
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sessions == nil {
		w.sessions, w.feeds, w.byWho = map[string]*session{}, map[string]*feed{}, map[string]int{}
	}
	if w.viewers >= maxAll {
		return nil, limitError{RefusedTotalLimit, fmt.Sprintf("%d viewers already (the limit)", w.viewers)}
	}
	if w.byWho[who] >= maxWho {
		return nil, limitError{RefusedViewerLimit, fmt.Sprintf("%s has %d live views open already (the limit)", who, w.byWho[who])}
	}
	f := w.feeds[st.Camera()]
	if f != nil && f.viewers >= maxCam {
		return nil, limitError{RefusedCameraLimit, fmt.Sprintf("%d viewers of %s already (the limit)", f.viewers, st.Camera())}
	}
	if f == nil {
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "veil-"+st.Camera())
		if err != nil {
			return nil, err
		}
		sub, err := st.Subscribe()
		if err != nil {
			return nil, err
		}
		f = &feed{track: track, sub: sub}
		w.feeds[st.Camera()] = f
		w.wg.Add(1)
		go w.write(f)
	}
	f.viewers++
	w.viewers++
	w.byWho[who]++
	w.Metrics.viewers.WithLabelValues(st.Camera()).Set(float64(f.viewers))
	return f, nil
}

// leave uncounts a viewer of st, ending its feed after the last one.
func (w *WHEP) leave(st *Stream, who string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.feeds[st.Camera()]
	if f == nil {
		return
	}
	f.viewers--
	w.viewers--
	if w.byWho[who]--; w.byWho[who] <= 0 {
		delete(w.byWho, who)
	}
	w.Metrics.viewers.WithLabelValues(st.Camera()).Set(float64(f.viewers))
	if f.viewers == 0 {
		delete(w.feeds, st.Camera())
		st.Unsubscribe(f.sub)
	}
}

// write sends a camera's pictures to its shared track until its feed ends.
func (w *WHEP) write(f *feed) {
	defer w.wg.Done()
	last := time.Duration(-1)
	for u := range f.sub.C {
		data := u.Data
		if u.Params != nil {
			data = append(append([]byte(nil), u.Params...), u.Data...)
		}
		d := time.Second / 15
		if last >= 0 && u.PTS > last {
			d = u.PTS - last
		}
		last = u.PTS
		if err := f.track.WriteSample(media.Sample{Data: data, Duration: d}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			w.Logger.Warn("sending to viewers", "component", "whep", "err", err)
		}
	}
}

// end closes a session once and reports it.
func (w *WHEP) end(s *session) {
	s.once.Do(func() {
		w.mu.Lock()
		delete(w.sessions, s.id)
		if s.expiry != nil {
			s.expiry.Stop()
		}
		w.mu.Unlock()
		if st := w.Streams[s.camera]; st != nil {
			w.leave(st, s.viewer.Who)
		}
		s.pc.Close()
		ev := SessionEvent{Viewer: s.viewer, Camera: s.camera, Start: s.start, End: time.Now()}
		w.Logger.Info("live view ended", "component", "whep", "camera", s.camera, "viewer", s.viewer.Who, "session", s.id, "seconds", ev.End.Sub(ev.Start).Seconds())
		if w.Ended != nil {
			w.Ended(ev)
		}
	})
}

// EndLogin ends every view of a console login (its logout).
func (w *WHEP) EndLogin(login string) {
	if login == "" {
		return
	}
	w.mu.Lock()
	var mine []*session
	for _, s := range w.sessions {
		if s.viewer.Login == login {
			mine = append(mine, s)
		}
	}
	w.mu.Unlock()
	for _, s := range mine {
		w.end(s)
	}
}

// Close ends every session and waits for their goroutines.
func (w *WHEP) Close() {
	w.mu.Lock()
	var all []*session
	for _, s := range w.sessions {
		all = append(all, s)
	}
	w.mu.Unlock()
	for _, s := range all {
		w.end(s)
	}
	w.wg.Wait()
}

// h264 are the H.264 formats veil offers viewers, High first (what libx264
// makes), Constrained Baseline for peers that ask for nothing else.
var h264 = []string{
	"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f",
	"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
}

// newPeerConnection is a viewer's connection, sending track.
func (w *WHEP) newPeerConnection(track *webrtc.TrackLocalStaticSample) (*webrtc.PeerConnection, *webrtc.RTPSender, error) {
	me := &webrtc.MediaEngine{}
	for i, f := range h264 {
		c := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: f, RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}},
			PayloadType: webrtc.PayloadType(102 + 2*i)}
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, nil, err
		}
	}
	// One interceptor registry per PeerConnection: they keep per-connection
	// state (NACK buffers, reports).
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, nil, err
	}
	se := rtcconf.SettingEngine(w.IPs, w.IncludeLoopback)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	return pc, sender, nil
}
