package detect

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/veilproject/veil/blur"
)

// TestNativeMemoryIsFreed: every OpenCV object veil makes (networks,
// outputs, cascades, box arrays) is freed by whoever made it, on
// success and on error, with every runtime, over pictures of several sizes
// (the OpenCV network is rebuilt when the size changes).
func TestNativeMemoryIsFreed(t *testing.T) {
	before := cvLive()
	for _, cfg := range []Config{{ModelDir: modelDir(t), Runtime: RuntimeOpenCV}, {ModelDir: modelDir(t), Runtime: RuntimeOpenVINO}, {Kind: KindHaar}} {
		det, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"bus.jpg", "messi5.jpg", "bus.jpg"} {
			raw := loadBGR(t, name)
			if _, err := det.Detect(context.Background(), blur.Image{Width: raw.Width, Height: raw.Height, Pix: raw.Pix}); err != nil {
				t.Fatal(err)
			}
		}
		det.Close()
		if n := cvLive() - before; n != 0 {
			t.Errorf("%s/%s: %d OpenCV objects left", cfg.Kind, cfg.Runtime, n)
		}
	}
	// Errors from OpenCV come back as errors and leak nothing.
	if _, err := readNet([]byte("not a model")); err == nil {
		t.Error("readNet took garbage")
	}
	for _, path := range []string{"/dev/null", "/nonexistent.xml", "native_test.go"} {
		if _, err := loadCascade(path); err == nil {
			t.Errorf("loadCascade(%s) took it", path)
		}
	}
	model, err := os.ReadFile(filepath.Join(modelDir(t), "centerface.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	net, err := readNet(model)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := net.forward(make([]byte, 3*4*4), 4, 4, 0, 32, []string{"537"}); err == nil {
		t.Error("a network input of width 0 was run")
	}
	net.free()
	if n := cvLive() - before; n != 0 {
		t.Errorf("%d OpenCV objects left after errors", n)
	}
}
