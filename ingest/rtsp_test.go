package ingest

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/queue"
)

// rtspServer starts GStreamer's gst-rtsp-server (testdata/rtsp_server.py,
// Debian's python3-gi) on port, looping vtest.avi at /cam (H.264 unless
// args say otherwise: --codec, --tls, --digest, --switch), and returns
// once it serves.
func rtspServer(t *testing.T, port int, args ...string) *exec.Cmd {
	t.Helper()
	if testing.Short() {
		t.Skip("needs GStreamer's RTSP server (the full suite runs it)")
	}
	cmd := exec.Command("/usr/bin/python3", append([]string{"testdata/rtsp_server.py", strconv.Itoa(port)}, args...)...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "serving") {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("rtsp server exited")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("rtsp server did not start")
	}
	return cmd
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type camRun struct {
	q      *queue.Queue[*frame.Raw]
	m      *Metrics
	cancel func()
	errc   chan error
}

func startCamera(t *testing.T, url, transport string) *camRun {
	return startRTSP(t, &RTSP{URL: url, Transport: transport})
}

// startRTSP runs cam (named lobby, with a 3 s stall timeout) until the test
// ends.
func startRTSP(t *testing.T, cam *RTSP) *camRun {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New[*frame.Raw](4, queue.DropOldest, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cam.Camera, cam.StallTimeout, cam.Metrics = "lobby", 3*time.Second, m
	if cam.Logger == nil {
		cam.Logger = testLog(t)
	}
	r := &camRun{q: q, m: m, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- cam.Run(ctx, q) }()
	t.Cleanup(func() {
		cancel()
		for range q.C() {
		}
		<-r.errc
	})
	return r
}

// nextFrame waits for a decoded frame.
func (r *camRun) nextFrame(t *testing.T, within time.Duration) *frame.Raw {
	t.Helper()
	select {
	case f := <-r.q.C():
		return f
	case <-time.After(within):
		t.Fatalf("no frame within %v", within)
	}
	return nil
}

func TestRTSPPullsAndDecodes(t *testing.T) {
	for _, tc := range []struct{ codec, transport, info string }{
		{"h264", "tcp", "H.264"},
		{"h264", "udp", "H.264"},
		{"h265", "tcp", "H.265"},
		{"mjpeg", "tcp", "MJPEG"},
	} {
		t.Run(tc.codec+"/"+tc.transport, func(t *testing.T) {
			port := freePort(t)
			rtspServer(t, port, "--codec", tc.codec)
			r := startCamera(t, "rtsp://viewer:s3cret@127.0.0.1:"+strconv.Itoa(port)+"/cam", tc.transport)
			var last uint64
			for i := 0; i < 15; i++ {
				f := r.nextFrame(t, 10*time.Second)
				if err := f.Validate(); err != nil || f.Width != 768 || f.Height != 576 {
					t.Fatalf("frame %dx%d: %v", f.Width, f.Height, err)
				}
				if i > 0 && f.Seq <= last {
					t.Fatalf("seq %d after %d", f.Seq, last)
				}
				last = f.Seq
			}
			if v := testutil.ToFloat64(r.m.up.WithLabelValues("lobby")); v != 1 {
				t.Errorf("veil_camera_up %v", v)
			}
			if !hasStreamInfo(r.m.info, "lobby", tc.info, "768", "576") {
				t.Errorf("no veil_camera_stream_info{codec=%q,width=768,height=576}", tc.info)
			}
		})
	}
}

// TestRTSPReconnectsWithin2s: the server is killed mid-stream and comes
// back after 4 s; frames flow again within 2 s of its return.
func TestRTSPReconnectsWithin2s(t *testing.T) {
	port := freePort(t)
	srv := rtspServer(t, port)
	r := startCamera(t, "rtsp://127.0.0.1:"+strconv.Itoa(port)+"/cam", "tcp")
	r.nextFrame(t, 10*time.Second)
	syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
	srv.Wait()
	// Drain, and see the camera marked down.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(r.m.up.WithLabelValues("lobby")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("camera still up after the server died")
		}
		select {
		case <-r.q.C():
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(4 * time.Second)
	for len(r.q.C()) > 0 {
		<-r.q.C()
	}
	rtspServer(t, port)
	back := time.Now()
	r.nextFrame(t, 10*time.Second)
	took := time.Since(back)
	t.Logf("camera back %v after the server's return; reconnects %v", took, testutil.ToFloat64(r.m.reconnects.WithLabelValues("lobby")))
	if took > 2*time.Second {
		t.Errorf("camera back after %v, want within 2s", took)
	}
}

// TestRTSPGarbagePortKeepsRetrying: a port that answers with random bytes
// fails each session quickly and cleanly; the source keeps retrying and
// stops on cancel.
func TestRTSPGarbagePortKeepsRetrying(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for i := range buf {
					buf[i] = byte(i*7 + 3)
				}
				c.SetDeadline(time.Now().Add(2 * time.Second))
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	r := startCamera(t, "rtsp://127.0.0.1:"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port)+"/cam", "tcp")
	time.Sleep(3500 * time.Millisecond)
	if n := testutil.ToFloat64(r.m.reconnects.WithLabelValues("lobby")); n < 1 {
		t.Errorf("%v reconnects", n)
	}
	if v := testutil.ToFloat64(r.m.up.WithLabelValues("lobby")); v != 0 {
		t.Errorf("camera up on garbage")
	}
	if len(r.q.C()) != 0 {
		t.Error("frames from garbage")
	}
}

func TestRedactHidesPassword(t *testing.T) {
	got := Redact("rtsp://admin:hunter2@10.0.0.5:554/stream1")
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "10.0.0.5:554/stream1") {
		t.Errorf("got %s", got)
	}
}
