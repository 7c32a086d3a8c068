package detect

import (
	"context"
	"errors"
	"image"
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

// TestSwappedModelIsNeverLoaded: the checksum is taken on the bytes the
// detector uses. A model file replaced after start (a weaker network, or
// garbage) is not read again when a network is compiled later (a new
// crop size, a camera that changed resolution), with either runtime.
func TestSwappedModelIsNeverLoaded(t *testing.T) {
	model, err := os.ReadFile(filepath.Join(modelDir(t), "centerface.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	messi := loadBGR(t, "messi5.jpg")
	for _, rt := range []string{RuntimeOpenVINO, RuntimeOpenCV} {
		t.Run(rt, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "centerface.onnx")
			if err := os.WriteFile(path, model, 0o644); err != nil {
				t.Fatal(err)
			}
			det, err := New(Config{ModelDir: dir, Runtime: rt}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer det.Close()
			if _, err := det.Detect(context.Background(), blur.Image{Width: 64, Height: 64, Pix: make([]byte, 64*64*3)}); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("not a model"), 0o644); err != nil {
				t.Fatal(err)
			}
			dets, err := det.Detect(context.Background(), blur.Image{Width: messi.Width, Height: messi.Height, Pix: messi.Pix})
			if err != nil {
				t.Fatalf("a new input size after the file was swapped: %v", err)
			}
			if len(dets) == 0 {
				t.Error("no face found in messi5.jpg after the file was swapped")
			}
		})
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

// TestOddPictureSizes: a picture of any size, down to one pixel, is
// resized to the network's multiple of 32 (inside OpenVINO's network, or
// by OpenCV), and the boxes come back inside the picture.
func TestOddPictureSizes(t *testing.T) {
	messi := loadBGR(t, "messi5.jpg")
	for _, rt := range []string{RuntimeOpenVINO, RuntimeOpenCV} {
		det, err := New(Config{ModelDir: modelDir(t), Runtime: rt}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, sz := range []image.Point{{1, 1}, {3, 5}, {33, 17}, {641, 479}, {1279, 721}} {
			// The top-left of messi5.jpg, repeated to fill the size.
			pix := make([]byte, sz.X*sz.Y*3)
			for y := 0; y < sz.Y; y++ {
				for x := 0; x < sz.X; x++ {
					copy(pix[(y*sz.X+x)*3:][:3], messi.Pix[((y%messi.Height)*messi.Width+x%messi.Width)*3:])
				}
			}
			dets, err := det.Detect(context.Background(), blur.Image{Width: sz.X, Height: sz.Y, Pix: pix})
			if err != nil {
				t.Errorf("%s %dx%d: %v", rt, sz.X, sz.Y, err)
			}
			for _, d := range dets {
				if !d.Box.In(image.Rect(0, 0, sz.X, sz.Y)) || d.Box.Empty() {
					t.Errorf("%s %dx%d: box %v outside the picture", rt, sz.X, sz.Y, d.Box)
				}
			}
		}
		det.Close()
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
