package main

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/console"
)

// editCounting is the admin drawing on the road camera's live picture in
// Chromium with the mouse: a line (its entering direction then set to
// left) and a zone of four corners. Saved, they are in veil.yaml beside
// what was there, the camera counts on the new line, the edit is audited;
// a line outside the picture is refused naming its key, and the file is
// left alone. ctx is logged in as an admin on road's page.
func editCounting(t *testing.T, ctx context.Context, p *proc, base, cfgPath, auditDir string) {
	t.Helper()
	run := func(what string, a ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, a...); err != nil {
			t.Fatalf("editor: %s: %v", what, err)
		}
	}
	run("open", chromedp.Click("#editor summary"), chromedp.WaitVisible("#editor-canvas"))
	// Where the picture lies on the screen (the video letterboxes it).
	type box struct{ X, Y, W, H float64 }
	pic, err := chromedp.Run(ctx, chromedp.Evaluate[box](`(() => { const v = document.querySelector('video[data-camera="road"]'), b = v.getBoundingClientRect();
		const s = Math.min(b.width / v.videoWidth, b.height / v.videoHeight), w = v.videoWidth * s, h = v.videoHeight * s;
		return {X: b.left + (b.width - w) / 2, Y: b.top + (b.height - h) / 2, W: w, H: h}; })()`))
	if err != nil || pic.W == 0 {
		t.Fatalf("editor: where the picture is: %+v %v", pic, err)
	}
	at := func(x, y float64) chromedp.Action[chromedp.Void] {
		return chromedp.MouseClickXY(pic.X+x*pic.W, pic.Y+y*pic.H)
	}
	run("draw a line", chromedp.Click(`[data-tool="line"]`), at(0.7, 0.2), at(0.7, 0.8))
	run("draw a zone", chromedp.Click(`[data-tool="zone"]`), at(0.1, 0.1), at(0.3, 0.1), at(0.3, 0.35), at(0.1, 0.35), at(0.1, 0.1))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(s => { s.value = 'left'; s.dispatchEvent(new Event('change')); return true; })(document.querySelectorAll('#editor-items select')[1])`)); err != nil {
		t.Fatalf("editor: the line's direction: %v", err)
	}
	if path := os.Getenv("VEIL_SCREENSHOT_EDITOR"); path != "" {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		shot, err := chromedp.Run(sctx, chromedp.FullScreenshot(85))
		cancel()
		if err != nil {
			t.Fatalf("editor: screenshot: %v", err)
		}
		os.WriteFile(path, shot, 0o644)
	}
	run("save", chromedp.Click("#editor-save"))
	var said string
	for t0 := time.Now(); time.Since(t0) < 20*time.Second && !strings.Contains(said, "Saved to"); time.Sleep(200 * time.Millisecond) {
		said, _ = chromedp.Run(ctx, chromedp.Text("#editor-status"))
	}
	if !strings.Contains(said, "Saved to "+cfgPath) {
		t.Fatalf("after saving, the editor says %q", said)
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("the saved file does not load: %v", err)
	}
	road := cfg.Cameras[1].Counting
	near := func(a, b [2]float64) bool { return math.Abs(a[0]-b[0]) < 0.01 && math.Abs(a[1]-b[1]) < 0.01 }
	if len(road.Lines) != 2 || road.Lines[0].ID != "road" || road.Lines[1].ID != "line1" || road.Lines[1].In != "left" ||
		!near(road.Lines[1].From, [2]float64{0.7, 0.2}) || !near(road.Lines[1].To, [2]float64{0.7, 0.8}) {
		t.Errorf("road's lines in the file: %+v", road.Lines)
	}
	if len(road.Zones) != 2 || road.Zones[1].ID != "zone1" || len(road.Zones[1].Polygon) != 4 || !near(road.Zones[1].Polygon[2], [2]float64{0.3, 0.35}) {
		t.Errorf("road's zones in the file: %+v", road.Zones)
	}
	// Counting restarted with the new line: it is in road's next events.
	p.waitFor(t, "a count event of road with line1", 30*time.Second, func(lines []string) bool {
		for _, e := range events(lines) {
			for _, l := range e.Lines {
				if e.Camera == "road" && l.ID == "line1" {
					return true
				}
			}
		}
		return false
	})

	// The restarted camera's live view plays for a page opened after it.
	run("reload", chromedp.Navigate(base+"/camera/road"))
	var pos float64
	for t0 := time.Now(); time.Since(t0) < 20*time.Second && pos <= 1; time.Sleep(300 * time.Millisecond) {
		pos, _ = chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector('video[data-camera="road"]').currentTime`))
	}
	if pos <= 1 {
		state, _ := chromedp.Run(ctx, chromedp.Text(`[data-state-of="road"]`))
		t.Errorf("road's live view after the edit: %.1f s played, %q", pos, state)
	}
	// A line off the picture is refused with its key; the file stays.
	before, _ := os.ReadFile(cfgPath)
	refusal, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch('/admin/counting/road', {method: 'POST', headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf]').content},
		body: JSON.stringify({lines: [{id: 'door', from: [0.5, 0.5], to: [1.5, 0.5]}], zones: []})}).then(r => r.text().then(b => r.status + ' ' + b))`, chromedp.EvalAwaitPromise))
	if !strings.HasPrefix(refusal, "400 ") || !strings.Contains(refusal, "cameras[1].lines[0]") {
		t.Errorf("a line off the picture: %q, want 400 naming cameras[1].lines[0]", refusal)
	}
	if after, _ := os.ReadFile(cfgPath); string(after) != string(before) {
		t.Error("a refused edit changed veil.yaml")
	}
	// The edit is audited.
	found := false
	for _, e := range auditEvents(auditDir) {
		found = found || e.Kind == console.AuditCountingChanged && e.User == "boss" && e.Camera == "road" && e.Detail == "2 lines, 2 zones"
	}
	if !found {
		t.Error("the audit log has no counting_changed by boss on road")
	}
}
