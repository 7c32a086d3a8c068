package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/queue"
	"github.com/veilproject/veil/rtcconf"
)

func newWHIPServer(t *testing.T) (*WHIP, *httptest.Server, *queue.Queue[*frame.Raw]) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New[*frame.Raw](4, queue.DropOldest, nil)
	w := NewWHIP(WHIPConfig{Cameras: []WHIPCamera{{ID: "desk", Token: "t0ken"}}, IncludeLoopback: true, IPs: []string{"127.0.0.1"}}, WHIPDeps{Metrics: m, Logger: testLog(t)})
	stop := runSource(t, w.Source("desk"), q)
	srv := httptest.NewServer(w)
	t.Cleanup(func() { http.DefaultClient.CloseIdleConnections(); srv.Close(); stop(); w.Close() })
	return w, srv, q
}

// runSource runs a camera's source into q until the returned stop is
// called; stop waits for it and checks that it closed q.
func runSource(t *testing.T, src *WHIPSource, q *queue.Queue[*frame.Raw]) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, q) }()
	return func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WHIP source: %v", err)
		}
		if err := q.Push(context.Background(), nil); !errors.Is(err, queue.ErrClosed) {
			t.Error("the WHIP source left its queue open")
		}
	}
}

func post(t *testing.T, url, token, ctype, body string) *http.Response {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestWHIPRejectsBadRequests(t *testing.T) {
	_, srv, _ := newWHIPServer(t)
	for _, tc := range []struct {
		name, path, token, ctype, body string
		code                           int
		want                           string
	}{
		{"no token", "/whip/desk", "", "application/sdp", "v=0", 401, "bearer token"},
		{"wrong token", "/whip/desk", "nope", "application/sdp", "v=0", 401, "bearer token"},
		{"unknown camera: no hint that it does not exist", "/whip/garage", "t0ken", "application/sdp", "v=0", 401, "bearer token"},
		{"wrong type", "/whip/desk", "t0ken", "text/plain", "v=0", 415, "application/sdp"},
		{"malformed sdp", "/whip/desk", "t0ken", "application/sdp", "this is not sdp", 400, "malformed SDP"},
		{"audio only", "/whip/desk", "t0ken", "application/sdp",
			"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n", 400, "no video"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, srv.URL+tc.path, tc.token, tc.ctype, tc.body)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, b, tc.code, tc.want)
			}
		})
	}
}

// TestWHIPTokensAreThrottledAndReported: wrong tokens from one address
// are each reported, then the address is blocked (429) even with the
// right token; another address is not; no page from another origin may
// call WHIP unless its origin is allowed.
func TestWHIPTokensAreThrottledAndReported(t *testing.T) {
	w, srv, _ := newWHIPServer(t)
	var mu sync.Mutex
	var reports []string
	w.deps.Tokens = &rtcconf.Gate{Refused: func(kind, camera, from string, blocked bool) {
		mu.Lock()
		reports = append(reports, fmt.Sprintf("%s %s %s %v", kind, camera, from, blocked))
		mu.Unlock()
	}}
	for i := 0; i < 10; i++ {
		resp := post(t, srv.URL+"/whip/desk", fmt.Sprintf("guess-%d", i), "application/sdp", "v=0")
		resp.Body.Close()
	}
	resp := post(t, srv.URL+"/whip/desk", "t0ken", "application/sdp", "v=0")
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("the right token after 10 wrong ones from one address: %d", resp.StatusCode)
	}
	mu.Lock()
	if len(reports) != 10 || reports[0] != "whip desk 127.0.0.1 false" || reports[9] != "whip desk 127.0.0.1 true" {
		t.Errorf("reports %v", reports)
	}
	mu.Unlock()
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/whip/desk", nil)
	req.Header.Set("Origin", "http://evil.example")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("CORS for an unlisted origin: %q", got)
	}
	w.cfg.AllowOrigins = []string{"https://publisher.example"}
	req.Header.Set("Origin", "https://publisher.example")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://publisher.example" {
		t.Errorf("CORS for an allowed origin: %q", got)
	}
}

// vp8Clip encodes frames of vtest.avi to VP8 in an IVF file.
func vp8Clip(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "clip.ivf")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
		"-frames:v", "60", "-vf", "scale=384:288", "-c:v", "libvpx", "-deadline", "realtime", "-g", "10", "-b:v", "1M", path).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	return path
}

// TestWHIPPublisher is a real WebRTC session on loopback: a pion peer
// publishes VP8 or H.264 (from vtest.avi) over WHIP; veil answers, decodes
// and delivers frames; DELETE ends the session.
func TestWHIPPublisher(t *testing.T) {
	for _, codec := range []string{webrtc.MimeTypeVP8, webrtc.MimeTypeH264} {
		t.Run(codec, func(t *testing.T) { whipPublish(t, codec) })
	}
}

// h264Clip encodes frames of vtest.avi to a Constrained Baseline H.264
// Annex-B stream, as browsers send.
func h264Clip(t *testing.T) []byte {
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
		"-frames:v", "60", "-vf", "scale=384:288", "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast",
		"-tune", "zerolatency", "-g", "10", "-bf", "0", "-f", "h264", "pipe:1").Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func whipPublish(t *testing.T, codec string) {
	w, srv, q := newWHIPServer(t)
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	pub, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: codec}, "video", "veil-test")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pub.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	offer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pub)
	pub.SetLocalDescription(offer)
	<-gathered
	resp := post(t, srv.URL+"/whip/desk", "t0ken", "application/sdp", pub.LocalDescription().SDP)
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(loc, "/whip/desk/") || resp.Header.Get("Content-Type") != "application/sdp" {
		t.Fatalf("%d %s %q", resp.StatusCode, loc, answer)
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	// Send the clip at 10 fps, in a loop, until the test is done.
	var frames [][]byte
	if codec == webrtc.MimeTypeVP8 {
		clip, _ := os.ReadFile(vp8Clip(t))
		r, _, err := ivfreader.NewWith(bytes.NewReader(clip))
		if err != nil {
			t.Fatal(err)
		}
		for {
			f, _, err := r.ParseNextFrame()
			if err != nil {
				break
			}
			frames = append(frames, f)
		}
	} else {
		r, err := h264reader.NewReader(bytes.NewReader(h264Clip(t)))
		if err != nil {
			t.Fatal(err)
		}
		var au []byte
		for {
			nal, err := r.NextNAL()
			if err != nil {
				break
			}
			au = append(au, append([]byte{0, 0, 0, 1}, nal.Data...)...)
			if nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr {
				frames = append(frames, au)
				au = nil
			}
		}
	}
	if len(frames) < 30 {
		t.Fatalf("%d frames in the clip", len(frames))
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			for _, f := range frames {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				track.WriteSample(media.Sample{Data: f, Duration: 100 * time.Millisecond})
			}
		}
	}()
	deadline := time.After(20 * time.Second)
	for n := 0; n < 10; n++ {
		select {
		case f := <-q.C():
			if err := f.Validate(); err != nil || f.Width != 384 || f.Height != 288 || f.Camera != "desk" {
				t.Fatalf("frame %dx%d %q: %v", f.Width, f.Height, f.Camera, err)
			}
		case <-deadline:
			t.Fatalf("%d frames in 20 s", n)
		}
	}
	if v := testutil.ToFloat64(w.deps.Metrics.up.WithLabelValues("desk")); v != 1 {
		t.Errorf("camera up %v", v)
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+loc, nil)
	req.Header.Set("Authorization", "Bearer t0ken")
	dresp, err := http.DefaultClient.Do(req)
	if err != nil || dresp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", err, dresp.StatusCode)
	}
	dresp.Body.Close()
	dresp, _ = http.DefaultClient.Do(req)
	dresp.Body.Close()
	if dresp.StatusCode != http.StatusNotFound {
		t.Errorf("second DELETE: %d", dresp.StatusCode)
	}
}
