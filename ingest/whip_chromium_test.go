package ingest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/queue"
	"github.com/veilproject/veil/rtcconf/netnstest"
)

// Chromium skips loopback for ICE (and libnice skips interfaces named
// veth*), so this test makes a network namespace with a veth pair renamed
// tst0/tst1 (10.77.0.1/24 outside, 10.77.0.2/24 inside) and runs itself
// inside it: veil's WHIP endpoint limited to 10.77.0.2, and headless
// Chromium publishing its fake camera (a y4m of vtest.avi) from a page on
// 127.0.0.1 (a secure context for getUserMedia). The namespace is removed
// afterwards; traffic never leaves it.
const netns = "veiltest"

func TestWHIPChromiumPublisher(t *testing.T) {
	if testing.Short() && !netnstest.Inside() {
		t.Skip("needs Chromium and a network namespace (root)")
	}
	if netnstest.Inside() {
		chromiumInNetns(t)
		return
	}
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Fatal("chromium not installed (Debian package chromium; make deps installs it)")
	}
	netnstest.Rerun(t, netns, "tst", "10.77.0")
}

const publishPage = `<!doctype html><title>veil WHIP test publisher</title><script>
async function publish(token) {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 384, height: 288}});
  const pc = new RTCPeerConnection();
  for (const t of stream.getVideoTracks()) { t.contentHint = 'detail'; pc.addTransceiver(t, {direction: 'sendonly'}); }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); }; });
  const resp = await fetch('/whip/desk', {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token}});
  const answer = await resp.text();
  if (resp.status !== 201) return resp.status + ' ' + answer;
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  window.pc = pc;
  return resp.status + ' ' + resp.headers.get('Location');
}
</script>`

func chromiumInNetns(t *testing.T) {
	dir := t.TempDir()
	y4m := filepath.Join(dir, "cam.y4m")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
		"-frames:v", "50", "-vf", "scale=384:288", "-pix_fmt", "yuv420p", y4m).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New[*frame.Raw](4, queue.DropOldest, nil)
	w := NewWHIP(WHIPConfig{Cameras: []WHIPCamera{{ID: "desk", Token: "chromium-test-token"}}, IPs: []string{"10.77.0.2"}}, WHIPDeps{Metrics: m, Logger: testLog(t)})
	defer w.Close()
	defer runSource(t, w.Source("desk"), q)()
	mux := http.NewServeMux()
	mux.Handle("/whip/", w)
	mux.HandleFunc("/", func(res http.ResponseWriter, _ *http.Request) { fmt.Fprint(res, publishPage) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-video-capture", y4m),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	start := time.Now()
	status, err := chromedp.Run(ctx, chromedp.Evaluate[string](`publish("chromium-test-token")`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(status, "201 /whip/desk/") {
		t.Fatalf("publish: %s", status)
	}
	for n := 0; n < 10; n++ {
		select {
		case f := <-q.C():
			if n == 0 {
				t.Logf("first decoded frame %v after the POST began: %dx%d", time.Since(start), f.Width, f.Height)
			}
			if err := f.Validate(); err != nil || f.Camera != "desk" {
				t.Fatalf("frame: %v", err)
			}
		case <-ctx.Done():
			t.Fatalf("%d frames from Chromium in 60 s", n)
		}
	}
	// A wrong token from the browser is refused.
	bad, err := chromedp.Run(ctx, chromedp.Evaluate[string](`publish("wrong")`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.HasPrefix(bad, "401") {
		t.Errorf("wrong token: %q %v", bad, err)
	}
}
