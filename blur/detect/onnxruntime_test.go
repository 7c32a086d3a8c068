package detect

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veilproject/veil/blur"
)

// TestONNXRuntimeMissingIsOneLine: without the library, choosing the
// runtime fails with one line that names the file and says how to fetch
// it; reduced precisions are refused by name, since they are OpenVINO's.
func TestONNXRuntimeMissingIsOneLine(t *testing.T) {
	dir := t.TempDir()
	_, err := New(Config{ModelDir: modelDir(t), Runtime: RuntimeONNXRuntime, RuntimeDir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, onnxRuntimeLib)) || !strings.Contains(err.Error(), "make runtimes") || strings.Contains(err.Error(), "\n") {
		t.Errorf("missing library: %v", err)
	}
	for _, prec := range []string{"bf16", "int8"} {
		err := (&Config{Kind: KindCenterFace, Threshold: 0.2, Scale: 1, Runtime: RuntimeONNXRuntime, Precision: prec}).Validate("detector")
		if err == nil || !strings.Contains(err.Error(), "detector.precision") {
			t.Errorf("precision %s on onnxruntime: %v", prec, err)
		}
	}
}

// TestONNXRuntimeMemoryIsFreed: every object veil makes in ONNX Runtime
// (sessions, and the tensors that wrap each input size's Go buffers) is
// freed by veil, when the size changes and when the detector closes
// (counted, as the OpenCV objects are); and sessions, which hold the
// model's weights outside Go's heap (7 MB or more each, 340 MB over 48),
// do not pile up: over 48, RSS moved by 40-155 MiB from run to run
// without a trend (the allocator keeping freed pages), hence the loose
// bound.
func TestONNXRuntimeMemoryIsFreed(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 50 sessions")
	}
	model, err := ReadModel(filepath.Join(modelDir(t), "centerface.onnx"), CenterFaceSHA256)
	if err != nil {
		t.Fatal(err)
	}
	messi := loadBGR(t, "messi5.jpg")
	pic := func(w, h int) blur.Image {
		img := blur.Image{Width: w, Height: h, Pix: make([]byte, w*h*3)}
		for y := 0; y < h; y++ {
			copy(img.Pix[y*w*3:(y+1)*w*3], messi.Pix[y*messi.Width*3:])
		}
		return img
	}
	open := func() *ORTCenterFace {
		d, err := NewORTCenterFace(DefaultONNXRuntimeDir(), model, 0.2, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := ortLive.Load()
	d := open()
	for _, img := range []blur.Image{pic(320, 320), pic(320, 320), pic(160, 160), pic(333, 217), pic(320, 320)} {
		if _, err := d.Detect(context.Background(), img); err != nil {
			t.Fatal(err)
		}
		if n := ortLive.Load() - before; n != 5 {
			t.Errorf("%dx%d: %d runtime objects held, want 5 (a session, an input and 3 outputs)", img.Width, img.Height, n)
		}
	}
	d.Close()
	d.Close() // twice is safe
	if n := ortLive.Load() - before; n != 0 {
		t.Errorf("%d runtime objects left after Close", n)
	}
	if _, err := d.Detect(context.Background(), pic(32, 32)); err == nil {
		t.Error("a closed detector ran")
	}
	for range 4 {
		d := open()
		d.Detect(context.Background(), pic(320, 320))
		d.Close()
	}
	rss := rssBytes(t)
	for range 48 {
		d := open()
		d.Detect(context.Background(), pic(320, 320))
		d.Close()
	}
	grew := rssBytes(t) - rss
	t.Logf("RSS moved %.1f MiB over 48 sessions", float64(grew)/(1<<20))
	if grew > 200<<20 {
		t.Errorf("RSS grew %d MiB over 48 sessions: sessions are not freed", grew>>20)
	}
	if n := ortLive.Load() - before; n != 0 {
		t.Errorf("%d runtime objects left", n)
	}
}
