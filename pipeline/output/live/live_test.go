package live

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/rtcconf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// camera feeds st obscured 320x240 frames at 15 fps (a moving bar, so that
// pictures differ) until ctx ends.
func camera(t *testing.T, ctx context.Context, st *Stream) <-chan struct{} {
	m, _ := blur.NewMetrics(prometheus.NewRegistry())
	bs, err := blur.New(blur.Config{}, blur.Deps{Detector: blurtest.NoFaces{}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	bs.WarmUp(ctx, 320, 240)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer bs.Close(context.Background())
		t0 := time.Now()
		tick := time.NewTicker(time.Second / 15)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pts := time.Duration(i) * time.Second / 15
			raw := frame.NewRaw(frame.Meta{Camera: "lobby", Seq: uint64(i), PTS: pts, Captured: t0.Add(pts)}, 320, 240)
			for y := 0; y < 240; y++ {
				for x := 0; x < 320; x++ {
					v := byte(40)
					if (x+4*i)%64 < 16 {
						v = 220
					}
					o := (y*320 + x) * 3
					raw.Pix[o], raw.Pix[o+1], raw.Pix[o+2] = v, v, v
				}
			}
			f, err := bs.Obscure(ctx, raw)
			if err == nil {
				st.Write(f)
			}
		}
	}()
	return done
}

const token = "a-view-token-for-lobby"

func newWHEP(t *testing.T) (*WHEP, *Stream, *Metrics) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st := NewStream(StreamConfig{Camera: "lobby", Preset: "ultrafast"}, StreamDeps{Metrics: m})
	w := &WHEP{Streams: map[string]*Stream{"lobby": st}, IncludeLoopback: true, MaxPerCamera: 2, Logger: slog.New(slog.DiscardHandler), Metrics: m,
		Authorize: func(r *http.Request, camera string) (Viewer, bool) {
			who := "token:" + camera
			if v := r.Header.Get("X-Viewer"); v != "" { // the test's stand-in for a second user
				who = v
			}
			return Viewer{Who: who, From: r.RemoteAddr}, r.Header.Get("Authorization") == "Bearer "+token
		}}
	return w, st, m
}

// viewer is a pion peer that watches over WHEP and counts the H.264
// pictures it gets, noting whether the first carried SPS, PPS and an IDR.
type viewer struct {
	pc       *webrtc.PeerConnection
	location string
	pictures atomic.Int32
	keyFirst atomic.Bool
}

func watch(t *testing.T, url string) *viewer {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	v := &viewer{pc: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		sb := samplebuilder.New(64, &codecs.H264Packet{}, 90000)
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			sb.Push(p)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				if v.pictures.Add(1) == 1 {
					v.keyFirst.Store(hasNAL(s.Data, 7) && hasNAL(s.Data, 8) && hasNAL(s.Data, 5))
				}
			}
		}
	})
	if v.location, err = connect(pc, url, token); err != nil {
		t.Fatal(err)
	}
	return v
}

// connect sends pc's offer, with every ICE candidate, to url's lobby
// camera (auth as a bearer token, unless empty), sets the answer, and
// returns the session's Location.
func connect(pc *webrtc.PeerConnection, url, auth string) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	<-gathered
	req, _ := http.NewRequest(http.MethodPost, url+"/whep/lobby", strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || loc == "" {
		return "", fmt.Errorf("POST: %d %s", resp.StatusCode, body)
	}
	return loc, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)})
}

func hasNAL(annexB []byte, typ byte) bool {
	for _, n := range bytes.Split(annexB, []byte{0, 0, 1}) {
		if len(n) > 0 && n[0]&0x1f == typ {
			return true
		}
	}
	return false
}

// TestWHEPViewersShareOneEncode: two viewers watch one camera over real
// WebRTC (pion peers on loopback): each starts on a keyframe with its
// parameter sets and keeps getting pictures, while the camera is encoded
// once per frame; a third is refused at the per-camera limit; DELETE ends
// a session and the audit hook hears of it.
func TestWHEPViewersShareOneEncode(t *testing.T) {
	w, st, m := newWHEP(t)
	var ended atomic.Int32
	w.Ended = func(SessionEvent) { ended.Add(1) }
	srv := httptest.NewServer(w)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := camera(t, ctx, st)
	defer func() { cancel(); <-done; w.Close(); st.Close(context.Background()) }()

	a, b := watch(t, srv.URL), watch(t, srv.URL)
	defer a.pc.Close()
	defer b.pc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for (a.pictures.Load() < 20 || b.pictures.Load() < 20) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if a.pictures.Load() < 20 || b.pictures.Load() < 20 || !a.keyFirst.Load() || !b.keyFirst.Load() {
		t.Fatalf("pictures %d and %d; first was a keyframe with SPS/PPS: %v %v", a.pictures.Load(), b.pictures.Load(), a.keyFirst.Load(), b.keyFirst.Load())
	}
	encoded := testutil.ToFloat64(m.encoded.WithLabelValues("lobby"))
	if got := float64(a.pictures.Load()); encoded > got*1.5+20 {
		t.Errorf("%v frames encoded for %v pictures per viewer: more than one encode per frame", encoded, got)
	}
	if v := testutil.ToFloat64(m.viewers.WithLabelValues("lobby")); v != 2 {
		t.Errorf("viewers %v", v)
	}
	// A third viewer: over the limit of 2.
	pc, _ := webrtc.NewPeerConnection(webrtc.Configuration{})
	pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	offer, _ := pc.CreateOffer(nil)
	pc.SetLocalDescription(offer)
	if code := post(t, srv.URL+"/whep/lobby", "Bearer "+token, "application/sdp", offer.SDP); code != http.StatusServiceUnavailable {
		t.Errorf("third viewer: %d, want 503", code)
	}
	pc.Close()
	// Another viewer cannot end a's session.
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+a.location, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Viewer", "mallory")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("DELETE by another viewer: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodDelete, srv.URL+a.location, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	resp.Body.Close()
	if v := testutil.ToFloat64(m.viewers.WithLabelValues("lobby")); v != 1 || ended.Load() != 1 {
		t.Errorf("after DELETE: viewers %v, ended %d", v, ended.Load())
	}
}

func post(t *testing.T, url, auth, ctype, body string) int {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestWHEPRefusals: bad requests get their status, each counted.
func TestWHEPRefusals(t *testing.T) {
	w, st, m := newWHEP(t)
	defer st.Close(context.Background())
	srv := httptest.NewServer(w)
	defer srv.Close()
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:102 H264/90000\r\n"
	for _, tc := range []struct {
		name, path, auth, ctype, body string
		want                          int
		reason                        string
	}{
		{"no credentials", "/whep/lobby", "", "application/sdp", offer, 401, RefusedUnauthorized},
		{"wrong token", "/whep/lobby", "Bearer nope", "application/sdp", offer, 401, RefusedUnauthorized},
		{"unknown camera", "/whep/garage", "Bearer " + token, "application/sdp", offer, 404, RefusedUnknownCamera},
		{"not sdp", "/whep/lobby", "Bearer " + token, "text/plain", offer, 415, RefusedBadOffer},
		{"malformed", "/whep/lobby", "Bearer " + token, "application/sdp", "v=0\r\nthis is not sdp", 400, RefusedBadOffer},
		{"no video", "/whep/lobby", "Bearer " + token, "application/sdp", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", 400, RefusedBadOffer},
	} {
		before := testutil.ToFloat64(m.refused.WithLabelValues(tc.reason))
		if got := post(t, srv.URL+tc.path, tc.auth, tc.ctype, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
		if testutil.ToFloat64(m.refused.WithLabelValues(tc.reason)) != before+1 {
			t.Errorf("%s: not counted as %s", tc.name, tc.reason)
		}
	}
}

// offerPC is a receive-only peer with its offer made.
func offerPC(t *testing.T) (*webrtc.PeerConnection, string) {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	offer, _ := pc.CreateOffer(nil)
	pc.SetLocalDescription(offer)
	return pc, offer.SDP
}

// TestWHEPViewsEndWithTheirLogin: a view's start is reported before it is
// answered, and refused when it cannot be; one user holds at most
// MaxPerViewer views; logging out ends that login's views and no other's;
// a login's expiry ends its views.
func TestWHEPViewsEndWithTheirLogin(t *testing.T) {
	w, st, m := newWHEP(t)
	w.MaxPerCamera, w.MaxPerViewer = 10, 2
	until := time.Now().Add(time.Hour)
	w.Authorize = func(r *http.Request, camera string) (Viewer, bool) {
		u := until
		if r.Header.Get("X-Short") != "" {
			u = time.Now().Add(300 * time.Millisecond)
		}
		return Viewer{Who: r.Header.Get("X-Viewer"), Login: r.Header.Get("X-Login"), Until: u}, true
	}
	var mu sync.Mutex
	var started, ended []string
	unwritable := false
	w.Started = func(e SessionEvent) error {
		mu.Lock()
		defer mu.Unlock()
		if unwritable {
			return errors.New("disk full")
		}
		started = append(started, e.Who)
		return nil
	}
	w.Ended = func(e SessionEvent) {
		mu.Lock()
		ended = append(ended, e.Who)
		mu.Unlock()
	}
	srv := httptest.NewServer(w)
	defer func() { srv.Close(); w.Close(); st.Close(context.Background()) }()
	open := func(who, login string, short bool) int {
		pc, sdp := offerPC(t)
		t.Cleanup(func() { pc.Close() })
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/whep/lobby", strings.NewReader(sdp))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("X-Viewer", who)
		req.Header.Set("X-Login", login)
		if short {
			req.Header.Set("X-Short", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, tc := range []struct {
		who, login string
		want       int
	}{{"guard", "tab1", 201}, {"guard", "tab2", 201}, {"guard", "tab3", 503}, {"admin", "a1", 201}} {
		if got := open(tc.who, tc.login, false); got != tc.want {
			t.Errorf("view %d by %s: %d, want %d", i, tc.who, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues(RefusedViewerLimit)); got != 1 {
		t.Errorf("refused for the per-viewer limit: %v", got)
	}
	mu.Lock()
	unwritable = true
	mu.Unlock()
	if got := open("admin", "a1", false); got != http.StatusServiceUnavailable {
		t.Errorf("a view that cannot be audited: %d, want 503", got)
	}
	mu.Lock()
	unwritable = false
	mu.Unlock()
	w.EndLogin("tab1")
	if v := testutil.ToFloat64(m.viewers.WithLabelValues("lobby")); v != 2 {
		t.Errorf("after tab1's logout: %v viewers, want 2", v)
	}
	if got := open("guard", "tab4", true); got != 201 { // a slot is free again
		t.Errorf("after a logout: %d", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(m.viewers.WithLabelValues("lobby")) != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if v := testutil.ToFloat64(m.viewers.WithLabelValues("lobby")); v != 2 {
		t.Errorf("after a login expired: %v viewers, want 2", v)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(started) != "[guard guard admin guard]" || len(ended) != 2 {
		t.Errorf("started %v, ended %v", started, ended)
	}
}

// TestKeyframeRequestsAreRateLimited: viewers asking for a keyframe on
// every picture (PLI, FIR, joins) get at most one a keyframeGap from the
// shared encoder, so they cannot swell the recording.
func TestKeyframeRequestsAreRateLimited(t *testing.T) {
	m, _ := NewMetrics(prometheus.NewRegistry())
	st := NewStream(StreamConfig{Camera: "lobby", Preset: "ultrafast"}, StreamDeps{Metrics: m})
	sub, err := st.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range sub.C {
			if u.Key {
				keys++
			}
		}
	}()
	stop := make(chan struct{})
	go func() { // a hostile viewer: a request every 10 ms
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				st.RequestKeyframe()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	<-camera(t, ctx, st)
	cancel()
	close(stop)
	st.Close(context.Background())
	<-done
	// 3 s at 15 fps: the first picture, and at most one forced keyframe a second.
	if keys > 1+int(3*time.Second/keyframeGap)+1 {
		t.Errorf("%d keyframes in 3 s of requests every 10 ms", keys)
	}
	if keys < 2 {
		t.Errorf("%d keyframes: requests were not served at all", keys)
	}
}

// TestWHEPWrongTokensAreThrottled: wrong view tokens are reported to the
// gate, and once it blocks the address even the right token waits.
func TestWHEPWrongTokensAreThrottled(t *testing.T) {
	w, st, _ := newWHEP(t)
	defer st.Close(context.Background())
	var reported atomic.Int32
	w.Tokens = &rtcconf.Gate{Refused: func(string, string, string, bool) { reported.Add(1) }}
	srv := httptest.NewServer(w)
	defer srv.Close()
	for i := range 10 {
		if code := post(t, srv.URL+"/whep/lobby", fmt.Sprintf("Bearer guess-%d", i), "application/sdp", "v=0"); code != http.StatusUnauthorized {
			t.Errorf("guess %d: %d", i, code)
		}
	}
	if code := post(t, srv.URL+"/whep/lobby", "Bearer "+token, "application/sdp", "v=0"); code != http.StatusTooManyRequests {
		t.Errorf("the right token from a blocked address: %d, want 429", code)
	}
	if reported.Load() != 10 {
		t.Errorf("%d wrong tokens reported, want 10", reported.Load())
	}
}
