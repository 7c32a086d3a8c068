package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/ingest"
)

var veilBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test here runs the built veil end to end: models, RTSP
		// servers, Kafka, Chromium. The full suite (make test) runs them.
		fmt.Println("cmd/veil: end-to-end tests skipped in -short mode")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "veil-bin")
	if err != nil {
		panic(err)
	}
	veilBin = filepath.Join(dir, "veil")
	if out, err := exec.Command("go", "build", "-o", veilBin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func veil(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(veilBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

func cached(t *testing.T, name string) string {
	d := os.Getenv("VEIL_CACHE")
	if d == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		d = filepath.Join(c, "veil")
	}
	p := filepath.Join(d, "testdata", "faces", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v (run scripts/fetch-testdata.sh)", err)
	}
	return p
}

// faceScores runs the real detector on a file veil wrote and returns the
// scores of what it finds: on obscured output there should be no face left.
func faceScores(t *testing.T, path string) []float32 {
	det, err := detect.New(detect.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	raw, err := ingest.DecodeImage(path, "check")
	if err != nil {
		t.Fatal(err)
	}
	dets, err := det.Detect(context.Background(), blur.Image{Width: raw.Width, Height: raw.Height, Pix: raw.Pix})
	if err != nil {
		t.Fatal(err)
	}
	var s []float32
	for _, d := range dets {
		s = append(s, d.Score)
	}
	return s
}

func TestAnonymizeGroupPhotosLeavesNoFace(t *testing.T) {
	for _, tc := range []struct {
		img, mode, runtime string
		faces              int
	}{
		{"t1.jpg", "blur", "openvino", 6},
		{"face-api-sample5.jpg", "mosaic", "openvino", 5},
		{"bus.jpg", "fill", "openvino", 2},
		{"t1.jpg", "blur", "onnxruntime", 6},
		{"face-api-sample5.jpg", "fill", "opencv", 5},
	} {
		t.Run(tc.img+"/"+tc.mode+"/"+tc.runtime, func(t *testing.T) {
			in := cached(t, tc.img)
			before := 0
			for _, s := range faceScores(t, in) {
				if s > 0.5 {
					before++
				}
			}
			if before < tc.faces {
				t.Fatalf("input: detector sees %d faces, labelled %d", before, tc.faces)
			}
			out := filepath.Join(t.TempDir(), "out.png")
			stdout, stderr, code := veil(t, nil, "anonymize", "-mode", tc.mode, "-runtime", tc.runtime, in, out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, "fail-closed frames") || !strings.Contains(stdout, "0 fail-closed") {
				t.Errorf("summary: %q", stdout)
			}
			for _, s := range faceScores(t, out) {
				if s > 0.5 {
					t.Errorf("output still has a face the detector is %.2f sure of", s)
				}
			}
		})
	}
}

func TestAnonymizeVideoKeepsSizeRateCount(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "mega.mkv")
	// 40 frames of Megamind.avi (cartoon faces) with an audio track, which
	// must be dropped.
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/Megamind.avi",
		"-f", "lavfi", "-i", "sine=frequency=440", "-shortest", "-frames:v", "40", "-c:v", "libx264", "-preset", "ultrafast",
		"-c:a", "aac", in).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	out := filepath.Join(dir, "out.mp4")
	stdout, stderr, code := veil(t, nil, "anonymize", in, out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "40 frames") || !strings.Contains(stderr, "progress:") {
		t.Errorf("stdout %q stderr %q", stdout, stderr)
	}
	if m := regexp.MustCompile(`(\d+) faces obscured`).FindStringSubmatch(stdout); m == nil || m[1] == "0" {
		t.Errorf("no faces obscured: %q", stdout)
	}
	probe := func(path string) string {
		b, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries",
			"stream=codec_type,width,height,r_frame_rate,nb_read_frames", "-of", "csv=p=0", path).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	pin, pout := probe(in), probe(out)
	if !strings.Contains(pin, "audio") || strings.Contains(pout, "audio") {
		t.Errorf("audio: in %q out %q", pin, pout)
	}
	vin := strings.Split(pin, "\n")[0]
	if pout != vin {
		t.Errorf("video stream changed: in %q out %q", vin, pout)
	}
	// Frames of the recording, checked by the detector: faces it is sure
	// of in the input must be gone from the output.
	for _, n := range []string{"5", "20", "35"} {
		for _, f := range []struct{ src, name string }{{in, "in"}, {out, "out"}} {
			png := filepath.Join(dir, f.name+n+".png")
			if o, err := exec.Command("ffmpeg", "-v", "error", "-i", f.src, "-vf", "select=eq(n\\,"+n+")", "-frames:v", "1", png).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, o)
			}
		}
		sure := func(path string) int {
			c := 0
			for _, s := range faceScores(t, path) {
				if s > 0.5 {
					c++
				}
			}
			return c
		}
		if before, after := sure(filepath.Join(dir, "in"+n+".png")), sure(filepath.Join(dir, "out"+n+".png")); after != 0 {
			t.Errorf("frame %s: %d faces before, %d still detectable after", n, before, after)
		}
	}
}

func TestAnonymizeErrors(t *testing.T) {
	dir := t.TempDir()
	img := cached(t, "bus.jpg")
	txt := filepath.Join(dir, "notes.txt")
	os.WriteFile(txt, []byte("x"), 0o644)
	broken := filepath.Join(dir, "broken.mp4")
	os.WriteFile(broken, []byte("not a video"), 0o644)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"missing input", nil, []string{"anonymize", filepath.Join(dir, "nope.jpg"), filepath.Join(dir, "o.jpg")}, 1, "nope.jpg: no such file"},
		{"unsupported input", nil, []string{"anonymize", txt, filepath.Join(dir, "o.jpg")}, 1, "notes.txt: unsupported file type"},
		{"broken video", nil, []string{"anonymize", broken, filepath.Join(dir, "o.mp4")}, 1, "broken.mp4: not a readable video"},
		{"kind mismatch", nil, []string{"anonymize", img, filepath.Join(dir, "o.mp4")}, 1, "output must be too"},
		{"unwritable output", nil, []string{"anonymize", img, "/nonexistent-dir/o.jpg"}, 1, "/nonexistent-dir/o.jpg: cannot write"},
		{"missing model", []string{"VEIL_MODEL_DIR=" + dir}, []string{"anonymize", img, filepath.Join(dir, "o.jpg")}, 1, "make models"},
		{"weak mode", nil, []string{"anonymize", "-mode", "gauss", img, filepath.Join(dir, "o.jpg")}, 2, "mode"},
		{"too many cells", nil, []string{"anonymize", "-mosaic-cells", "12", img, filepath.Join(dir, "o.jpg")}, 2, "mosaic_cells"},
		{"bad threshold", nil, []string{"anonymize", "-threshold", "2", img, filepath.Join(dir, "o.jpg")}, 2, "threshold"},
		{"one arg", nil, []string{"anonymize", img}, 2, "want IN and OUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := veil(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			if tc.code == 1 && strings.Count(strings.TrimSpace(lastLines(stderr)), "\n") != 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "o.*")); len(ents) != 0 {
		t.Errorf("failed runs left %v", ents)
	}
}

// lastLines drops slog lines, leaving what veil printed as its error.
func lastLines(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "time=") && l != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestDemoServesMetricsCountsAndRecords(t *testing.T) {
	dir := t.TempDir()
	clip := filepath.Join(dir, "clip.avi")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
		"-frames:v", "12", "-c:v", "mpeg4", clip).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	cmd := exec.Command(veilBin, "demo", "-input", clip, "-out", dir, "-metrics-listen", "127.0.0.1:0", "-listen", "127.0.0.1:0", "-window", "1s")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(3 * time.Minute)
	var url string
	events := 0
	for events < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo exited: %s", stderr.String())
			}
			if m := regexp.MustCompile(`metrics: +(http://\S+)`).FindStringSubmatch(l); m != nil {
				url = m[1]
			}
			if strings.HasPrefix(l, "{") {
				var e footfall.Event
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("event line %q: %v", l, err)
				}
				if e.Schema != footfall.SchemaV1 || e.Camera != "sample" || e.Seq != uint64(events) || len(e.Lines) != 1 || e.Lines[0].ID != "road" {
					t.Errorf("event %d: %+v", events, e)
				}
				events++
			}
		case <-deadline:
			t.Fatalf("no 3 count events in 3 minutes: %s", stderr.String())
		}
	}
	wants := []string{
		`veil_blur_frames_total{camera="sample",result="obscured"}`,
		`veil_blur_fail_closed_frames_total{camera="sample",reason="deadline"}`,
		`veil_blur_detector_ready{camera="sample"} 1`,
		`veil_ingest_frames_decoded_total{camera="sample"}`,
		`veil_pipeline_frames_delivered_total{camera="sample"}`,
		`veil_blur_detect_duration_seconds_bucket`,
		`veil_people_crossings_total{camera="sample",direction="in",line="road"}`,
		`veil_people_zone_occupancy{camera="sample",zone="road_area"}`,
		`veil_people_zone_capacity{camera="sample",zone="road_area"} 8`,
		`veil_people_count_events_total{camera="sample"}`,
		`veil_publish_events_total`,
		`veil_publish_spool_events`,
		`veil_footfall_entries_total{camera="sample",line="road",site=""}`,
		`veil_footfall_exits_total{camera="sample",line="road",site=""}`,
		`veil_zone_occupancy{camera="sample",site="",zone="road_area"}`,
		`veil_zone_capacity{camera="sample",site="",zone="road_area"} 8`,
		`veil_exporter_events_total{result="applied"}`,
		`veil_exporter_partitions_owned 3`,
		`veil_recording_disk_free_bytes`,
	}
	// The footfall series appear once the exporter has read the first
	// events back from the embedded broker, which on a slow or busy
	// machine can be seconds after they were printed: scrape until every
	// series is there, or a minute has passed.
	var body []byte
	var missing []string
	for end := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(end) {
			break
		}
	}
	for _, m := range missing {
		t.Errorf("/metrics lacks %s", m)
	}
	// Every metric the alert rules and dashboards name is in this real
	// exposition.
	for _, file := range []string{"../../dashboards/alerts.yml", "../../dashboards/grafana/footfall.json", "../../dashboards/grafana/operations.json"} {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`\bveil_[a-z0-9_]+`).FindAllString(string(text), -1) {
			if !regexp.MustCompile(`(?m)^` + name + `(\{| )`).Match(body) {
				t.Errorf("%s names %s, which veil does not export", filepath.Base(file), name)
			}
		}
	}
	// Prometheus' own linter: names, units, _total suffixes, help text.
	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = bytes.NewReader(body)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	cmd.Process.Signal(syscall.SIGINT)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("demo after SIGINT: %v\n%s", err, stderr.String())
	}
	last := rest[len(rest)-1]
	m := regexp.MustCompile(`crossings: road (\d+) in (\d+) out; exported via kafka: road (\d+) in (\d+) out;`).FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("summary: %q", last)
	}
	if m[1] != m[3] || m[2] != m[4] {
		t.Errorf("counted %s/%s, exported %s/%s: the Kafka path lost or doubled counts", m[1], m[2], m[3], m[4])
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "sample", "*.mp4"))
	if len(segs) == 0 {
		t.Fatal("no recording segment")
	}
	b, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", segs[0]).Output()
	if err != nil || strings.TrimSpace(string(b)) == "0" {
		t.Errorf("recording: %v %q", err, b)
	}
}
