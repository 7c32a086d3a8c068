package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/veilproject/veil/pipeline/console"
	"github.com/veilproject/veil/rtcconf/netnstest"
)

// TestConsoleInChromium is the guard's console end to end in headless
// Chromium against `veil run`, with a camera whose source has large,
// detectable faces (Megamind.avi). Chromium skips loopback for ICE, so,
// as for WHIP, the test makes a network namespace with a veth pair
// (tcn0/tcn1, 10.78.0.1/24 and 10.78.0.2/24) and runs itself, veil and
// Chromium inside it; the namespace is removed afterwards.
func TestConsoleInChromium(t *testing.T) {
	if netnstest.Inside() {
		consoleInNetns(t)
		return
	}
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Fatal("chromium not installed (Debian package chromium; make deps installs it)")
	}
	netnstest.Rerun(t, "veilconsole", "tcn", "10.78.0")
}

func consoleInNetns(t *testing.T) {
	dir := t.TempDir()
	clip := filepath.Join(dir, "faces.mp4")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/Megamind.avi", "-an",
		"-vf", "fps=15", "-c:v", "libx264", "-preset", "ultrafast", clip).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	// The source has faces the detector is sure of: the check on the
	// screenshot below can fail.
	src := filepath.Join(dir, "source.png")
	exec.Command("ffmpeg", "-v", "error", "-ss", "2", "-i", clip, "-frames:v", "1", src).Run()
	if s := faceScores(t, src); len(s) == 0 || maxScore(s) < 0.5 {
		t.Fatalf("the source frame has no sure face (%v): the test would prove nothing", s)
	}
	hash := func(pw string) string {
		h, _ := bcrypt.GenerateFromPassword([]byte(pw), 12) // the cost veil requires
		return string(h)
	}
	audit := filepath.Join(dir, "audit")
	cfg := fmt.Sprintf(`cameras:
  - id: lobby
    file: %s
  - id: road
    file: %s
    window: 2s
    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]
    zones: [{id: road_area, polygon: [[0.2, 0.3], [0.8, 0.3], [0.8, 0.7], [0.2, 0.7]]}]
metrics: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0", ice_ips: [10.78.0.2]}
recordings: {dir: %s, segment: 2s, keep: 1h, preset: ultrafast}
console:
  users:
    - {name: guard, password_hash: "%s", role: viewer}
    - {name: boss, password_hash: "%s", role: admin}
  audit: {dir: %s}
  privacy: {operator: Sunrise Sales Office, contact: the front desk}
`, clip, vtest, filepath.Join(dir, "rec"), hash("guard-password-1"), hash("boss-password-22"), audit)
	cfgPath := writeConfig(t, dir, cfg)
	p := startVeil(t, "run", "-config", cfgPath)
	var addr string
	p.waitFor(t, "console address", 60*time.Second, func(lines []string) bool {
		addr = consoleAddr(lines)
		return addr != ""
	})
	base := "http://" + addr

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"), chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bctx, 240*time.Second)
	defer cancel()
	login := func(name, pw string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/login")); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx, chromedp.SendKeys("#name", name)); err != nil {
			t.Fatal(err)
		}
		chromedp.Do(ctx, chromedp.SendKeys("#password", pw))
		chromedp.Do(ctx, chromedp.Click("#submit"))
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#logout, #error"))); err != nil {
			t.Fatalf("after logging in as %s: %v", name, err)
		}
	}
	// A wrong password is refused.
	login("guard", "not-the-password")
	if err := chromedp.Do(ctx, chromedp.WaitVisible("#error")); err != nil {
		t.Fatalf("no error after a wrong password: %v", err)
	}
	// The guard logs in: the grid's live video plays.
	login("guard", "guard-password-1")
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`video[data-camera="lobby"]`)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var played float64
	for played < 2 && time.Since(start) < 40*time.Second {
		time.Sleep(500 * time.Millisecond)
		played, _ = chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector('video[data-camera="lobby"]').currentTime`))
	}
	if played < 2 {
		t.Fatalf("live video did not play: currentTime %.2f after %v", played, time.Since(start))
	}
	// The live picture carries the camera's name and the time.
	if s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-stamp-of="lobby"]').textContent`)); !regexp.MustCompile(`^lobby  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`).MatchString(s) {
		t.Errorf("the live picture's stamp reads %q", s)
	}
	t.Logf("live video playing: currentTime %.1f s, %v after the page", played, time.Since(start))
	shot := filepath.Join(dir, "live.png")
	png, err := chromedp.Run(ctx, chromedp.Screenshot(`video[data-camera="lobby"]`))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(shot, png, 0o644)
	if s := faceScores(t, shot); maxScore(s) > 0.5 {
		t.Errorf("the live view shows a face scored %.2f", maxScore(s))
	}
	// A viewer cannot reach the admin page.
	status, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch('/admin').then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != 403 {
		t.Errorf("viewer on /admin: %d, want 403", status)
	}
	// A recording segment plays from the camera page.
	var link string
	for time.Since(start) < 60*time.Second {
		chromedp.Do(ctx, chromedp.Navigate(base+"/camera/lobby"))
		link, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('[data-play]') || {}).dataset?.play || ''`))
		if link != "" {
			break
		}
		time.Sleep(time.Second)
	}
	if link == "" {
		t.Fatal("no recording listed on the camera page")
	}
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS(`[data-play]`))); err != nil {
		t.Fatal(err)
	}
	chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-play]`)))
	var pos float64
	for t0 := time.Now(); pos < 0.5 && time.Since(t0) < 20*time.Second; {
		time.Sleep(300 * time.Millisecond)
		pos, _ = chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById('playback').currentTime`))
	}
	if pos < 0.5 {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(v => JSON.stringify({src: v.src, err: v.error && v.error.code, msg: v.error && v.error.message, net: v.networkState, ready: v.readyState, dur: v.duration, paused: v.paused}))(document.getElementById('playback'))`))
		t.Errorf("recording %s did not play (currentTime %.2f): %s", link, pos, state)
	}
	// The day's timeline: the segments are on it, and a time typed in
	// plays the recording from that moment, its time of day shown.
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#timeline .seg').length`)); n < 1 {
		t.Errorf("%d segments on the day's timeline", n)
	}
	first, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`+document.querySelector('[data-start]').dataset.start`))
	want := time.UnixMilli(int64(first)).Add(1500 * time.Millisecond).Local()
	chromedp.Do(ctx, chromedp.SetValue("#goto", want.Format("15:04:05")))
	chromedp.Do(ctx, chromedp.Click("#goto-button"))
	var at float64
	for t0 := time.Now(); time.Since(t0) < 15*time.Second; time.Sleep(300 * time.Millisecond) {
		if at, _ = chromedp.Run(ctx, chromedp.Evaluate[float64](`+(document.getElementById('playing-at').dataset.t || 0)`)); at > 0 {
			break
		}
	}
	if d := time.UnixMilli(int64(at)).Sub(want.Truncate(time.Second)); d < -time.Second || d > 4*time.Second {
		t.Errorf("going to %s played from %s", want.Format("15:04:05"), time.UnixMilli(int64(at)).Format("15:04:05.000"))
	}
	// The export trial, as a guard would: open the camera, type the two
	// times into the clip form, download. Timed from opening the page.
	trial := time.Now()
	chromedp.Do(ctx, chromedp.Navigate(base+"/camera/lobby"))
	chromedp.Do(ctx, chromedp.SetValue(`#clip-form input[name="from"]`, time.UnixMilli(int64(first)).Add(time.Second).Local().Format("15:04:05")))
	chromedp.Do(ctx, chromedp.SetValue(`#clip-form input[name="to"]`, time.UnixMilli(int64(first)).Add(5*time.Second).Local().Format("15:04:05")))
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(f => fetch(f.action + '?' + new URLSearchParams(new FormData(f))).then(r => r.blob().then(b => r.status + ' ' + b.size)))(document.getElementById('clip-form'))`, chromedp.EvalAwaitPromise))
	if !strings.HasPrefix(got, "200 ") || err != nil {
		t.Errorf("exporting a clip from the camera page: %q %v", got, err)
	} else {
		t.Logf("the export trial: a 4 s clip, stamped, %s bytes, %v after opening the camera page", strings.TrimPrefix(got, "200 "), time.Since(trial).Round(100*time.Millisecond))
	}
	// A gap in the day's recordings (the camera down) is marked on the
	// timeline: a copy of the first segment, half an hour before it.
	if early := time.UnixMilli(int64(first)).Add(-30 * time.Minute); early.Local().Day() == time.UnixMilli(int64(first)).Local().Day() {
		segs, _ := filepath.Glob(filepath.Join(dir, "rec", "lobby", "*.mp4"))
		if len(segs) > 0 {
			b, _ := os.ReadFile(segs[0])
			os.WriteFile(filepath.Join(dir, "rec", "lobby", "lobby-"+early.UTC().Format("20060102T150405.000Z")+".mp4"), b, 0o644)
			chromedp.Do(ctx, chromedp.Navigate(base+"/camera/lobby"))
			if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#timeline .gap').length`)); n != 1 {
				t.Errorf("%d gaps marked on the timeline, want 1 (half an hour without recording)", n)
			}
		}
	}
	// Leaving ends the live view; the admin sees the audit log.
	chromedp.Do(ctx, chromedp.Navigate(base+"/privacy"))
	time.Sleep(time.Second)
	login("boss", "boss-password-22")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/admin")); err != nil {
		t.Fatal(err)
	}
	table, err := chromedp.Run(ctx, chromedp.Text("#audit"))
	if err != nil || !strings.Contains(table, "live_view") {
		t.Errorf("admin page audit: %v\n%s", err, table)
	}
	// The audit log on disk: the failed login, the login, the live view
	// with its duration, the playback, the denied admin page.
	kinds := map[string]console.Event{}
	var longest time.Duration
	for _, e := range auditEvents(audit) {
		kinds[e.Kind] = e
		if e.Kind == console.AuditLiveView && e.User == "guard" && e.Camera == "lobby" {
			longest = max(longest, e.End.Sub(e.Start))
		}
	}
	for _, k := range []string{console.AuditLoginFailed, console.AuditLogin, console.AuditLiveView, console.AuditPlay, console.AuditDenied, console.AuditConfigLoaded} {
		if _, ok := kinds[k]; !ok {
			t.Errorf("audit log lacks %s (has %v)", k, kinds)
		}
	}
	// The road camera's page, live with today's counts, for the README
	// ($VEIL_SCREENSHOT).
	chromedp.Do(ctx, chromedp.Navigate(base+"/camera/road"))
	for t0 := time.Now(); time.Since(t0) < 20*time.Second; time.Sleep(300 * time.Millisecond) {
		if pos, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector('video[data-camera="road"]').currentTime`)); pos > 1.5 {
			break
		}
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#charts .chart').length`)); n != 2 {
		t.Errorf("road's page shows %d charts of today, want 2 (its line and its zone)", n)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#range-charts .chart').length`)); n != 2 {
		t.Errorf("road's page shows %d charts of the last 7 days, want 2", n)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#timeline-counts span').length`)); n != 24 {
		t.Errorf("road's timeline has %d hours of counts under it, want 24", n)
	}
	page, err := chromedp.Run(ctx, chromedp.FullScreenshot(85))
	if err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv("VEIL_SCREENSHOT"); path != "" {
		os.WriteFile(path, page, 0o644)
	}
	// The strip of the day's pictures under the timeline shows a picture.
	thumb := 0
	for t0 := time.Now(); time.Since(t0) < 15*time.Second && thumb != 192; time.Sleep(300 * time.Millisecond) {
		thumb, _ = chromedp.Run(ctx, chromedp.Evaluate[int](`(document.querySelector('#thumbs img') || {}).naturalWidth || 0`))
	}
	if thumb != 192 {
		t.Errorf("the day's strip of pictures: the first is %d px wide, want 192", thumb)
	}
	// The admin draws a line and a zone on road's picture.
	editCounting(t, ctx, p, base, cfgPath, audit)
	// The Chinese notice and its printable sign render in a Chinese font
	// (setup.sh installs one); $VEIL_SCREENSHOT_NOTICE and
	// $VEIL_SCREENSHOT_SIGN keep them for the docs.
	for _, n := range []struct{ path, env string }{{"/privacy?lang=zh", "VEIL_SCREENSHOT_NOTICE"}, {"/privacy?print&lang=zh", "VEIL_SCREENSHOT_SIGN"}} {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+n.path)); err != nil {
			t.Fatal(err)
		}
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](glyphsDiffer)); err != nil || !ok {
			t.Errorf("%s: not in Chinese, or no font on this machine draws it (%v)", n.path, err)
		}
		if path := os.Getenv(n.env); path != "" {
			if shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(85)); err == nil {
				os.WriteFile(path, shot, 0o644)
			}
		}
	}
	// On a phone (390x844) no page scrolls sideways: the grid, a camera's
	// page with its charts, the privacy notice ($VEIL_SCREENSHOT_PHONE
	// keeps the camera page's screenshot).
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", "/camera/road", "/privacy?lang=zh"} {
		chromedp.Do(ctx, chromedp.Navigate(base+p))
		time.Sleep(500 * time.Millisecond)
		if w, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`)); w > 0 {
			t.Errorf("%s on a 390 px wide phone is %d px too wide", p, w)
		}
		if p == "/camera/road" {
			for t0 := time.Now(); time.Since(t0) < 15*time.Second; time.Sleep(300 * time.Millisecond) {
				if pos, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector('video[data-camera="road"]').currentTime`)); pos > 1 {
					break
				}
			}
			if shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(85)); err == nil && os.Getenv("VEIL_SCREENSHOT_PHONE") != "" {
				os.WriteFile(os.Getenv("VEIL_SCREENSHOT_PHONE"), shot, 0o644)
			}
		}
	}
	// The grid's view lasted from the login to the camera page.
	if longest < 2*time.Second {
		t.Errorf("no live view of lobby by guard of 2 s or more in the audit log (longest %v)", longest)
	}
}

// auditEvents are the entries of the audit log in dir, oldest file first.
func auditEvents(dir string) []console.Event {
	var out []console.Event
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var e console.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				out = append(out, e)
			}
		}
		fh.Close()
	}
	return out
}

// glyphsDiffer: the page is in Chinese and two different characters draw
// differently; without a Chinese font both are the same empty box.
const glyphsDiffer = `document.documentElement.lang === 'zh-CN' && (() => {
	const c = document.createElement('canvas'); c.width = c.height = 32;
	const g = c.getContext('2d');
	const draw = (ch) => { g.clearRect(0, 0, 32, 32); g.font = '24px sans-serif'; g.fillText(ch, 2, 26); return g.getImageData(0, 0, 32, 32).data.join(); };
	return draw('个') !== draw('人');
})()`

func maxScore(s []float32) float32 {
	m := float32(0)
	for _, v := range s {
		m = max(m, v)
	}
	return m
}
