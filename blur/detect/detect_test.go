package detect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/veilproject/veil/blur"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewRefusesMissingOrWrongModel(t *testing.T) {
	dir := t.TempDir()
	_, err := New(Config{ModelDir: dir}, nil)
	if !errors.Is(err, ErrModelMissing) || !strings.Contains(err.Error(), "make models") {
		t.Errorf("missing model: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "centerface.onnx"), []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{ModelDir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("corrupt model: %v", err)
	}
	_, err = New(Config{Kind: KindHaar, HaarPath: filepath.Join(dir, "none.xml")}, nil)
	if err == nil || !strings.Contains(err.Error(), "none.xml") {
		t.Errorf("missing cascade: %v", err)
	}
}

func TestConfigValidateNamesKey(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Kind: "yolo"}, "detector.kind"},
		{Config{Threshold: 1.5}, "detector.threshold"},
		{Config{Threshold: -0.1}, "detector.threshold"},
		{Config{Scale: 9}, "detector.scale"},
	}
	for _, tc := range cases {
		c := tc.cfg
		c.Defaults()
		if err := c.Validate("detector"); err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
			t.Errorf("%+v: got %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestCenterFaceFindsMessiAcrossSizeChanges(t *testing.T) {
	det, err := New(Config{ModelDir: modelDir(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	bus := loadBGR(t, "bus.jpg")
	messi := loadBGR(t, "messi5.jpg")
	// Alternate sizes: OpenCV 4.6 returns garbage if the net is not rebuilt.
	for i, raw := range []struct {
		name string
		w, h int
		pix  []byte
		want int
	}{{"bus", bus.Width, bus.Height, bus.Pix, 2}, {"messi", messi.Width, messi.Height, messi.Pix, 0}, {"bus", bus.Width, bus.Height, bus.Pix, 2}} {
		dets, err := det.Detect(context.Background(), blur.Image{Width: raw.w, Height: raw.h, Pix: raw.pix})
		if err != nil {
			t.Fatal(err)
		}
		if raw.want > 0 && len(dets) != raw.want {
			t.Errorf("run %d (%s): %d faces, want %d: %v", i, raw.name, len(dets), raw.want, dets)
		}
		if len(dets) > 200 {
			t.Errorf("run %d (%s): %d boxes: stale network shapes", i, raw.name, len(dets))
		}
	}
}

func TestDetectRejectsBadBuffer(t *testing.T) {
	det, err := New(Config{ModelDir: modelDir(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	if _, err := det.Detect(context.Background(), blur.Image{Width: 10, Height: 10, Pix: make([]byte, 7)}); err == nil {
		t.Error("short buffer accepted")
	}
}
