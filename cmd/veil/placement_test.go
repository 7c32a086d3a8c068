package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/counts/exporter"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/kafkatest"
)

// placementClip is vtest.avi made small (384x288, 10 fps) and twice as
// long (160 s), as H.264 that gst-rtsp-server streams without encoding:
// six cameras on three boxes fit this machine's two cores.
func placementClip(t *testing.T) string {
	return vtestClip(t, "vtest-288p10-twice.mp4", []string{"-stream_loop", "1"}, "-vf", "scale=384:288", "-r", "10", "-g", "10")
}

// siteBox is one box of the site: a `veil run` with placement.
type siteBox struct {
	name, cfg, rec string
	mu             sync.Mutex
	runs           []*proc // one per start
}

func (b *siteBox) start(t *testing.T) {
	p := startVeil(t, "run", "-config", b.cfg)
	b.mu.Lock()
	b.runs = append(b.runs, p)
	b.mu.Unlock()
}

func (b *siteBox) last() *proc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runs[len(b.runs)-1]
}

// events are every count event this box printed, over all its starts.
func (b *siteBox) events() []footfall.Event {
	b.mu.Lock()
	runs := slices.Clone(b.runs)
	b.mu.Unlock()
	var out []footfall.Event
	for _, p := range runs {
		lines, _ := p.snapshot()
		out = append(out, events(lines)...)
	}
	return out
}

// firstAfter is when this box first counted camera after t0: the first
// window of a run started after t0 (its start: the first frame counted).
func (b *siteBox) firstAfter(camera string, t0 time.Time) (time.Time, bool) {
	var first time.Time
	for _, e := range b.events() {
		if e.Camera == camera && time.UnixMilli(e.Epoch).After(t0) && (first.IsZero() || e.WindowStart.Before(first)) {
			first = e.WindowStart
		}
	}
	return first, !first.IsZero()
}

// segmentAfter: a recording segment of camera begun after t0 on this box.
func (b *siteBox) segmentAfter(camera string, t0 time.Time) (time.Time, bool) {
	segs, _ := filepath.Glob(filepath.Join(b.rec, camera, camera+"-*.mp4"))
	var first time.Time
	for _, s := range segs {
		ts, err := time.Parse("20060102T150405.000Z", strings.TrimSuffix(strings.TrimPrefix(filepath.Base(s), camera+"-"), ".mp4"))
		if err == nil && ts.After(t0) && (first.IsZero() || ts.Before(first)) {
			first = ts
		}
	}
	return first, !first.IsZero()
}

// servedBy is which box counted each camera last, from the events printed
// since t0.
func servedBy(boxes []*siteBox, t0 time.Time) map[string]string {
	last := map[string]time.Time{}
	by := map[string]string{}
	for _, b := range boxes {
		for _, e := range b.events() {
			if e.WindowEnd.After(t0) && e.WindowEnd.After(last[e.Camera]) {
				last[e.Camera], by[e.Camera] = e.WindowEnd, b.name
			}
		}
	}
	return by
}

// TestSiteBoxesShareCameras: three boxes of one site share six RTSP
// cameras through Kafka's group membership, each recording and counting
// its two. One box is SIGKILLed: its cameras are recorded and counted
// again by the other two within 15 s. It returns, with its spool, and
// takes two cameras back. Afterwards the exporter holds exactly the sum of
// what every box counted (nothing lost with the killed box, nothing twice),
// box-c is stopped and its cameras move at once,
// no camera was counted by two boxes over the same time, the site's
// totals never went down while cameras moved, and box-a's console says
// where each camera is served.
func TestSiteBoxesShareCameras(t *testing.T) {
	if testing.Short() {
		t.Skip("three veil boxes, six RTSP cameras and a Kafka broker")
	}
	dir := t.TempDir()
	k, err := kafkatest.Start(1)
	if err != nil {
		t.Fatalf("starting Kafka: %v", err)
	}
	defer k.Stop()
	brokers := k.Brokers

	clip := placementClip(t)
	var cams strings.Builder
	for i := range 6 {
		fmt.Fprintf(&cams, `  - id: cam%d
    url: rtsp://127.0.0.1:%d/cam
    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]
    window: 1s
    method: motion
`, i+1, rtspCamera(t, "--file", clip))
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("guard-password-1"), 12)
	var boxes []*siteBox
	for _, name := range []string{"box-a", "box-b", "box-c"} {
		b := &siteBox{name: name, rec: filepath.Join(dir, name, "rec")}
		extra := ""
		if name == "box-a" {
			extra = `http: {listen: "127.0.0.1:0"}
console:
  users: [{name: guard, password_hash: "` + string(h) + `", role: viewer}]
  audit: {dir: ` + filepath.Join(dir, name, "audit") + `}
  privacy: {operator: Sunrise Sales Office, contact: the front desk}
`
		}
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		b.cfg = writeConfig(t, filepath.Join(dir, name), "site: office-1\nplacement: {box: "+name+", handover: 1s, console: \"http://"+name+".office/\"}\n"+
			"kafka: {brokers: [\""+brokers[0]+"\"]}\nprint_events: true\ndetector: {lanes: 1}\nmetrics: {listen: \"127.0.0.1:0\"}\n"+
			"recordings: {dir: "+b.rec+", segment: 2s, keep: 1h}\nspool_dir: "+filepath.Join(dir, name, "spool")+"\n"+extra+"cameras:\n"+cams.String())
		boxes = append(boxes, b)
	}
	if _, err := config.Load(boxes[0].cfg); err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		b.start(t)
	}
	defer func() {
		for _, b := range boxes {
			b.last().cmd.Process.Kill()
		}
	}()

	// The exporter follows the site's totals from the start.
	exp, err := exporter.New(exporter.Config{Kafka: kafkaconf.Config{Brokers: brokers}, GroupID: "placement-test"}, exporter.Deps{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ectx, stopExp := context.WithCancel(context.Background())
	expDone := make(chan error, 1)
	go func() { expDone <- exp.Run(ectx) }()
	defer func() { stopExp(); <-expDone }()
	siteTotal := func() int64 {
		var n int64
		for src, lines := range exp.Totals() {
			if strings.HasPrefix(src, "office-1/") {
				for _, v := range lines {
					n += v[0] + v[1]
				}
			}
		}
		return n
	}
	var wentDown []string
	watchStop, watchDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		prev := int64(0)
		for {
			select {
			case <-watchStop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if n := siteTotal(); n < prev {
				wentDown = append(wentDown, fmt.Sprintf("%d after %d", n, prev))
			} else {
				prev = n
			}
		}
	}()

	// All six served, two by each box.
	t0 := time.Now()
	var by map[string]string
	waitUntil(t, "six cameras counted, two by each box", 3*time.Minute, func() bool {
		by = servedBy(boxes, time.Now().Add(-3*time.Second))
		n := map[string]int{}
		for _, b := range by {
			n[b]++
		}
		return len(by) == 6 && n["box-a"] == 2 && n["box-b"] == 2 && n["box-c"] == 2
	}, boxes)
	t.Logf("six cameras served two by each box %v after the boxes started: %v", time.Since(t0).Round(time.Second), by)
	time.Sleep(5 * time.Second)

	// box-b dies.
	var moved []string
	for cam, b := range by {
		if b == "box-b" {
			moved = append(moved, cam)
		}
	}
	sort.Strings(moved)
	kill := time.Now()
	boxes[1].last().cmd.Process.Signal(syscall.SIGKILL)
	for _, cam := range moved {
		var counted, recorded time.Time
		waitUntil(t, cam+" counted and recorded by box-a or box-c", 40*time.Second, func() bool {
			for _, b := range []*siteBox{boxes[0], boxes[2]} {
				if c, ok := b.firstAfter(cam, kill); ok {
					counted = c
					recorded, ok = b.segmentAfter(cam, kill)
					return ok
				}
			}
			return false
		}, boxes)
		t.Logf("box-b SIGKILLed: %s counted again after %v, recorded after %v", cam, counted.Sub(kill).Round(100*time.Millisecond), recorded.Sub(kill).Round(100*time.Millisecond))
		if counted.Sub(kill) > 15*time.Second || recorded.Sub(kill) > 15*time.Second {
			t.Errorf("%s served again %v (counting) and %v (recording) after its box died; want within 15s", cam, counted.Sub(kill), recorded.Sub(kill))
		}
	}
	checkConsoleWhere(t, boxes[0], "box-b killed")

	// box-b returns with its spool, and takes work back.
	back := time.Now()
	boxes[1].start(t)
	waitUntil(t, "box-b serving two cameras again", 2*time.Minute, func() bool {
		n := 0
		for _, cam := range []string{"cam1", "cam2", "cam3", "cam4", "cam5", "cam6"} {
			if _, ok := boxes[1].firstAfter(cam, back); ok {
				n++
			}
		}
		return n == 2
	}, boxes)
	t.Logf("box-b back: serving two cameras after %v", time.Since(back).Round(100*time.Millisecond))
	time.Sleep(4 * time.Second)
	checkConsoleWhere(t, boxes[0], "box-b back")

	// box-c is stopped: it leaves the group at once, so its cameras move
	// without waiting out the session timeout, their last windows flushed.
	var fromC []string
	for cam, b := range servedBy(boxes, time.Now().Add(-2*time.Second)) {
		if b == "box-c" {
			fromC = append(fromC, cam)
		}
	}
	stopC := time.Now()
	if exit, took := boxes[2].last().stop(t, syscall.SIGTERM, 40*time.Second); exit != 0 {
		t.Errorf("box-c exited %d after %v", exit, took)
	}
	for _, cam := range fromC {
		var counted time.Time
		waitUntil(t, cam+" counted by box-a or box-b after box-c stopped", 40*time.Second, func() bool {
			for _, b := range boxes[:2] {
				if c, ok := b.firstAfter(cam, stopC); ok {
					counted = c
					return true
				}
			}
			return false
		}, boxes[:2])
		t.Logf("box-c stopped: %s counted again after %v", cam, counted.Sub(stopC).Round(100*time.Millisecond))
	}
	lines, _ := boxes[0].last().snapshot()
	if m := regexp.MustCompile(`(?m)^veil_placement_cameras (\d+)`).FindStringSubmatch(scrape(metricsURL(lines))); m == nil || m[1] != "3" {
		t.Errorf("box-a's veil_placement_cameras: %v, want 3 (six cameras on two boxes)", m)
	}

	for _, b := range boxes[:2] {
		if exit, _ := b.last().stop(t, syscall.SIGTERM, 40*time.Second); exit != 0 {
			_, stderr := b.last().snapshot()
			t.Errorf("%s exited %d\n%s", b.name, exit, tail(stderr, 20))
		}
	}

	// What every box counted, by camera; and no camera counted twice over
	// the same time.
	want := map[string][2]int64{}
	var all []footfall.Event
	for _, b := range boxes {
		for _, e := range b.events() {
			all = append(all, e)
			for _, l := range e.Lines {
				w := want[e.Source()]
				want[e.Source()] = [2]int64{w[0] + int64(l.Entries), w[1] + int64(l.Exits)}
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].WindowStart.Before(all[j].WindowStart) })
	lastRun := map[string]footfall.Event{}
	for _, e := range all {
		if p, ok := lastRun[e.Camera]; ok && p.Epoch != e.Epoch && e.WindowStart.Before(p.WindowEnd) {
			t.Errorf("camera %s counted by two runs over the same time: epoch %d until %s, epoch %d from %s", e.Camera, p.Epoch, p.WindowEnd, e.Epoch, e.WindowStart)
		}
		if p, ok := lastRun[e.Camera]; !ok || e.WindowEnd.After(p.WindowEnd) {
			lastRun[e.Camera] = e
		}
	}
	var got map[string][2]int64
	waitUntil(t, "the exporter to hold every box's counts", time.Minute, func() bool {
		got = map[string][2]int64{}
		for src, lines := range exp.Totals() {
			got[src] = lines["road"]
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	}, nil)
	close(watchStop)
	<-watchDone
	if len(wentDown) > 0 {
		t.Errorf("the site's total went down while cameras moved: %v", wentDown)
	}
	var sum [2]int64
	for _, v := range want {
		sum[0], sum[1] = sum[0]+v[0], sum[1]+v[1]
	}
	t.Logf("exporter equals the boxes' counts on all six cameras: %d in, %d out, in %d events", sum[0], sum[1], len(all))
}

// waitUntil polls cond every 200 ms until it holds or d has passed.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool, boxes []*siteBox) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	var logs strings.Builder
	for _, b := range boxes {
		_, stderr := b.last().snapshot()
		fmt.Fprintf(&logs, "--- %s\n%s\n", b.name, tail(stderr, 15))
	}
	t.Fatalf("no %s within %v\n%s", what, d, logs.String())
}

// checkConsoleWhere: box-a's console lists the six cameras, those it
// serves as served here and the others with the box serving them.
func checkConsoleWhere(t *testing.T, a *siteBox, what string) {
	t.Helper()
	lines, _ := a.last().snapshot()
	base := "http://" + consoleAddr(lines)
	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if code, _ := formLogin(cl, base, "guard", "guard-password-1"); code != http.StatusOK {
		t.Fatalf("%s: console login: %d", what, code)
	}
	resp, err := cl.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	here, there := strings.Count(page, "served here"), strings.Count(page, `href="http://box-`)
	if here+there != 6 || here == 0 || strings.Contains(page, "not known now") {
		t.Errorf("%s: box-a's console shows %d cameras served here and %d linked to the box serving them; want all six\n%s", what, here, there, page)
	}
}
