package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/spool"
)

const vtest = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

// proc is a running veil whose stdout lines and stderr are collected.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	stderr bytes.Buffer
	done   chan struct{}
}

func startVeil(t testing.TB, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(veilBin, args...), done: make(chan struct{})}
	out, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done; p.cmd.Wait() })
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *proc) snapshot() ([]string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...), p.stderr.String()
}

// waitFor polls until cond holds or the time is up.
func (p *proc) waitFor(t testing.TB, what string, d time.Duration, cond func(lines []string) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		lines, _ := p.snapshot()
		if cond(lines) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	lines, stderr := p.snapshot()
	t.Fatalf("no %s in %s\nstdout: %s\nstderr: %s", what, d, strings.Join(lines, "\n"), stderr)
}

// metricsURL is the /metrics address veil printed.
func metricsURL(lines []string) string {
	for _, l := range lines {
		if m := regexp.MustCompile(`metrics:? +(http://\S+/metrics)`).FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return ""
}

// consoleAddr is the console's address from veil's log (the last one
// logged), or "".
func consoleAddr(lines []string) string {
	addr := ""
	for _, l := range lines {
		if m := regexp.MustCompile(`listening on (\S+)`).FindStringSubmatch(l); m != nil {
			addr = m[1]
		}
	}
	return addr
}

func scrape(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func events(lines []string) []footfall.Event {
	var evs []footfall.Event
	for _, l := range lines {
		var e footfall.Event
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &e) == nil {
			evs = append(evs, e)
		}
	}
	return evs
}

// stop sends sig and waits at most d for veil to exit.
func (p *proc) stop(t testing.TB, sig syscall.Signal, d time.Duration) (exit int, took time.Duration) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(sig)
	waited := make(chan error, 1)
	go func() { <-p.done; waited <- p.cmd.Wait() }()
	select {
	case err := <-waited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), time.Since(start)
		}
		return 0, time.Since(start)
	case <-time.After(d):
		_, stderr := p.snapshot()
		t.Fatalf("veil did not stop within %s of %v\n%s", d, sig, stderr)
		return -1, d
	}
}

// segmentsDecode checks every finished segment under dir decodes to frames
// and that no partial file is left.
func segmentsDecode(t *testing.T, dir string) []string {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.mp4"))
	partials, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(partials) != 0 {
		t.Errorf("partial segments left: %v", partials)
	}
	for _, s := range segs {
		out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", s).Output()
		if err != nil || strings.TrimSpace(string(out)) == "0" {
			t.Errorf("segment %s does not decode: %q %v", filepath.Base(s), out, err)
		}
	}
	return segs
}

func writeConfig(t testing.TB, dir, yaml string) string {
	p := filepath.Join(dir, "veil.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestShutdownIsTheSameForRunAndDemo: demo is run with an embedded config,
// so SIGINT stops both the same way: exit 0, the last (partial) count
// window flushed and printed after the signal, the open segment finished.
func TestShutdownIsTheSameForRunAndDemo(t *testing.T) {
	for _, name := range []string{"run", "demo"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var p *proc
			if name == "demo" {
				p = startVeil(t, "demo", "-out", dir, "-metrics-listen", "127.0.0.1:0", "-listen", "127.0.0.1:0", "-window", "1s")
			} else {
				p = startVeil(t, "run", "-config", writeConfig(t, dir, `cameras:
  - id: sample
    file: `+vtest+`
    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]
    window: 1s
metrics: {listen: "127.0.0.1:0"}
recordings: {dir: `+dir+`, segment: 60s, keep: 1h}
`))
			}
			p.waitFor(t, "two count events", 90*time.Second, func(l []string) bool { return len(events(l)) >= 2 })
			before := len(events(func() []string { l, _ := p.snapshot(); return l }()))
			exit, took := p.stop(t, syscall.SIGINT, 30*time.Second)
			lines, stderr := p.snapshot()
			evs := events(lines)
			if exit != 0 {
				t.Errorf("exit %d after SIGINT\n%s", exit, stderr)
			}
			if len(evs) <= before {
				t.Errorf("no count window flushed after SIGINT (%d events before, %d after)", before, len(evs))
			}
			for i, e := range evs {
				if e.Seq != uint64(i) || e.Camera != "sample" {
					t.Errorf("event %d: %+v", i, e)
				}
			}
			if segs := segmentsDecode(t, filepath.Join(dir, "sample")); len(segs) != 1 {
				t.Errorf("segments %v, want the one open at SIGINT, finished", segs)
			}
			// demo's console keeps its audit log beside -out (never inside
			// the recordings), not under the working directory's veil-demo.
			if logs, _ := filepath.Glob(filepath.Join(dir+"-audit", "audit-*.jsonl")); name == "demo" && len(logs) == 0 {
				t.Errorf("no audit log beside -out %s", dir)
			}
			t.Logf("%s stopped in %s", name, took.Round(time.Millisecond))
		})
	}
}

// TestRecordingGoesOnWhileKafkaIsDownAndTheSpoolFull: the counts path is
// stuck (no broker, spool full, so count events wait), and security
// recording must not notice: segments keep appearing and decode. A stop
// then takes a bounded time and names the count event it could not keep.
func TestRecordingGoesOnWhileKafkaIsDownAndTheSpoolFull(t *testing.T) {
	dir := t.TempDir()
	// A spool already full: an outage long enough to fill 64 MiB.
	sp, err := spool.Open(filepath.Join(dir, "spool"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{512 << 10, 4 << 10, 64} { // to the last byte an event would need
		for {
			if err := sp.Append([]byte("old"), bytes.Repeat([]byte("x"), size)); errors.Is(err, spool.ErrFull) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	sp.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String() // nothing listens here once closed
	l.Close()
	p := startVeil(t, "run", "-config", writeConfig(t, dir, `cameras:
  - id: lobby
    file: `+vtest+`
    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]
    window: 1s
    method: motion
metrics: {listen: "127.0.0.1:0"}
recordings: {dir: `+filepath.Join(dir, "rec")+`, segment: 2s, keep: 1h}
kafka: {brokers: ["`+dead+`"]}
spool_dir: `+filepath.Join(dir, "spool")+`
`))
	p.waitFor(t, "metrics address", 60*time.Second, func(l []string) bool { return metricsURL(l) != "" })
	lines, _ := p.snapshot()
	url := metricsURL(lines)
	// Events back up through the queues to the counter, which then waits;
	// its own queue drops frames for it alone. (The motion method counts
	// every frame at once, so a counter queue that drops means events are
	// stuck; the detector method's queue also drops while it waits for its
	// share of the engine.)
	counterStuck := regexp.MustCompile(`veil_pipeline_frames_dropped_total\{camera="lobby",reason="queue_full",stage="counter"\} [1-9]`)
	segments := regexp.MustCompile(`veil_recording_segments_total\{camera="lobby"\} (\d+)`)
	p.waitFor(t, "full spool and a stuck counter", 120*time.Second, func([]string) bool {
		body := scrape(url)
		return strings.Contains(body, "veil_publish_spool_full 1") && counterStuck.MatchString(body)
	})
	n := func() int {
		m := segments.FindStringSubmatch(scrape(url))
		if m == nil {
			return 0
		}
		k, _ := strconv.Atoi(m[1])
		return k
	}
	stuckAt := n()
	time.Sleep(7 * time.Second)
	if got := n(); got < stuckAt+3 {
		t.Errorf("segments %d when the counter got stuck, %d seven seconds later: recording waited on Kafka", stuckAt, got)
	}
	if body := scrape(url); !strings.Contains(body, "veil_publish_spool_full 1") {
		t.Error("the spool is no longer full: the test did not hold the counts path stuck")
	}
	exit, took := p.stop(t, syscall.SIGTERM, 40*time.Second)
	_, stderr := p.snapshot()
	if exit == 0 || !strings.Contains(stderr, "not delivered") && !strings.Contains(stderr, "not spooled") {
		t.Errorf("exit %d; a count event that could not be kept must be named\n%s", exit, stderr)
	}
	if segs := segmentsDecode(t, filepath.Join(dir, "rec", "lobby")); len(segs) < stuckAt+3 {
		t.Errorf("only %d segments", len(segs))
	}
	t.Logf("stopped in %s with Kafka down and the spool full", took.Round(time.Millisecond))
}

// TestNoCoreDumps: a running veil has a core size limit of 0 (and is not
// dumpable), so a crash writes no raw frame to disk.
func TestNoCoreDumps(t *testing.T) {
	dir := t.TempDir()
	p := startVeil(t, "run", "-config", writeConfig(t, dir, "cameras:\n  - id: c\n    file: "+vtest+"\nmetrics: {listen: \"127.0.0.1:0\"}\n"))
	p.waitFor(t, "metrics address", 60*time.Second, func(l []string) bool { return metricsURL(l) != "" })
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Max core file size\s+0\s+0\s`).Match(b) {
		t.Errorf("core dumps still possible:\n%s", b)
	}
	p.stop(t, syscall.SIGTERM, 30*time.Second)
}
