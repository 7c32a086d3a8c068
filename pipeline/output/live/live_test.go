package live

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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
	"github.com/veilproject/veil/pipeline/frame"
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
	st := NewStream("lobby", "ultrafast", nil, m, nil)
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
