package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestStatusPageInChromium opens the demo's camera page in headless
// Chromium, waits for the sample camera's row to show it up with frames
// obscured, and saves a screenshot ($VEIL_SCREENSHOT, or the test's temp
// dir).
func TestStatusPageInChromium(t *testing.T) {
	dir := t.TempDir()
	page := "http://" + startDemo(t, dir) + "/"
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"), chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1100, 420),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	// Wait until the row shows the camera up and some frames obscured.
	var row string
	for {
		if err := chromedp.Do(ctx, chromedp.WaitVisible(`tr[data-camera="sample"] td.up`)); err != nil {
			t.Fatalf("no sample row marked up: %v", err)
		}
		r, err := chromedp.Run(ctx, chromedp.Text(`tr[data-camera="sample"]`))
		if err != nil {
			t.Fatal(err)
		}
		row = r
		if f := strings.Fields(row); len(f) > 2 && f[2] != "0" {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(row, "road") || !strings.Contains(row, "road_area") {
		t.Errorf("row %q lacks the line and zone", row)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("VEIL_SCREENSHOT")
	if path == "" {
		path = filepath.Join(dir, "status.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes); row: %s", path, len(png), row)
}
