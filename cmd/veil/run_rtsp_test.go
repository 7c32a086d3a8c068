package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunRTSPCameraRecordsObscured runs `veil run` against a real RTSP
// server (GStreamer's gst-rtsp-server looping vtest.avi) with 2 s segments:
// the camera comes up, segments appear and decode, the recording's frames
// hold no detectable face, count events reach stdout, and SIGTERM finishes
// the open segment cleanly.
func TestRunRTSPCameraRecordsObscured(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := exec.Command("/usr/bin/python3", "../../ingest/testdata/rtsp_server.py", strconv.Itoa(port))
	srvOut, _ := srv.StdoutPipe()
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { syscall.Kill(-srv.Process.Pid, syscall.SIGKILL); srv.Wait() }()
	sc := bufio.NewScanner(srvOut)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "serving") {
	}

	dir := t.TempDir()
	cfg := `cameras:
  - id: lobby
    url: rtsp://viewer:topsecret@127.0.0.1:` + strconv.Itoa(port) + `/cam
    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]
metrics: {listen: "127.0.0.1:0"}
recordings: {dir: ` + filepath.Join(dir, "rec") + `, segment: 2s, keep: 1h}
`
	os.WriteFile(filepath.Join(dir, "veil.yaml"), []byte(cfg), 0o644)
	cmd := exec.Command(veilBin, "run", "-config", filepath.Join(dir, "veil.yaml"))
	var stdout bytes.Buffer
	stderrR, stderrW := io.Pipe()
	cmd.Stdout = &stdout
	cmd.Stderr = stderrW
	var logs bytes.Buffer
	go io.Copy(&logs, stderrR)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// Wait for metrics address and for the camera to be up.
	var url string
	deadline := time.Now().Add(60 * time.Second)
	for url == "" && time.Now().Before(deadline) {
		if m := regexp.MustCompile(`metrics (http://\S+)`).FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
		}
		time.Sleep(100 * time.Millisecond)
	}
	if url == "" {
		t.Fatalf("no metrics address: %s", logs.String())
	}
	var body string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if strings.Contains(body, `veil_recording_segments_total{camera="lobby"} 2`) {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, want := range []string{`veil_camera_up{camera="lobby"} 1`, `veil_recording_segments_total{camera="lobby"} 2`,
		`veil_ingest_frames_decoded_total{camera="lobby"}`, `veil_blur_frames_total{camera="lobby",result="obscured"}`,
		`veil_pipeline_frames_delivered_total{camera="lobby"} `} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), "topsecret") || strings.Contains(stdout.String(), "topsecret") {
		t.Error("the camera password was logged")
	}
	if !strings.Contains(stdout.String(), `"schema":"veil.footfall.v1"`) {
		t.Errorf("no count event on stdout: %s", stdout.String())
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "rec", "lobby", "*.mp4"))
	partials, _ := filepath.Glob(filepath.Join(dir, "rec", "lobby", ".*"))
	if len(segs) < 3 || len(partials) != 0 {
		t.Fatalf("segments %v, partials %v", segs, partials)
	}
	for _, s := range segs {
		out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=width,height,nb_read_frames", "-of", "csv=p=0", s).Output()
		if err != nil || !strings.HasPrefix(string(out), "768,576,") || strings.HasSuffix(strings.TrimSpace(string(out)), ",0") {
			t.Errorf("segment %s: %q %v", filepath.Base(s), out, err)
		}
	}
	// The recording holds no face the detector is sure of.
	png := filepath.Join(dir, "frame.png")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", segs[0], "-frames:v", "1", png).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, s := range faceScores(t, png) {
		if s > 0.5 {
			t.Errorf("recorded frame has a face scored %.2f", s)
		}
	}
}
