package detect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
// crop size, a camera that changed resolution), with any runtime.
func TestSwappedModelIsNeverLoaded(t *testing.T) {
	model, err := os.ReadFile(filepath.Join(modelDir(t), "centerface.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	messi := loadBGR(t, "messi5.jpg")
	for _, rt := range []string{RuntimeOpenVINO, RuntimeONNXRuntime, RuntimeOpenCV} {
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
		// Faces the detector is sure of: a reduced precision's lower
		// threshold (int8: 0.12) may add a doubtful box at a frame's edge.
		sure := 0
		for _, d := range dets {
			if d.Score >= 0.5 {
				sure++
			}
		}
		if raw.want > 0 && sure != raw.want {
			t.Errorf("run %d (%s): %d faces scored 0.5 or more, want %d: %v", i, raw.name, sure, raw.want, dets)
		}
		if len(dets) > 200 {
			t.Errorf("run %d (%s): %d boxes: stale network shapes", i, raw.name, len(dets))
		}
	}
}

// TestOddPictureSizes: a picture of any size, down to one pixel, is
// resized to the network's multiple of 32 (inside OpenVINO's network, by
// OpenCV, or by veil for ONNX Runtime), and the boxes come back inside the picture.
func TestOddPictureSizes(t *testing.T) {
	messi := loadBGR(t, "messi5.jpg")
	for _, rt := range []string{RuntimeOpenVINO, RuntimeONNXRuntime, RuntimeOpenCV} {
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

// TestInt8ModelIsChecked: the int8 model is made on the machine, so it is
// checked against the checksum file made with it, which must also name the
// checked f32 model and the recipe. Asked for by name, a bad one is an
// error naming the file; under auto it is left out, with f32 and bf16
// still measured.
func TestInt8ModelIsChecked(t *testing.T) {
	f32, err := os.ReadFile(filepath.Join(modelDir(t), "centerface.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := ReadInt8Model(modelDir(t))
	if err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	side := func(file, from, recipe string) string {
		return file + "  " + Int8Model + "\nfrom " + from + "\nrecipe " + recipe + "\n"
	}
	for _, tc := range []struct {
		name  string
		model []byte
		side  string // "" writes no checksum file
		want  string // in the error; "" for none
	}{
		{"missing", nil, "", "make models"},
		{"no checksum file", good, "", "checksum file"},
		{"edited", append(append([]byte(nil), good...), 0), side(sum(good), CenterFaceSHA256, Int8Recipe), "checksum file says"},
		{"from another model", good, side(sum(good), strings.Repeat("0", 64), Int8Recipe), "checksum file says"},
		{"another recipe", good, side(sum(good), CenterFaceSHA256, "by hand"), "checksum file says"},
		{"intact", good, side(sum(good), CenterFaceSHA256, Int8Recipe), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "centerface.onnx"), f32, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.model != nil {
				if err := os.WriteFile(filepath.Join(dir, Int8Model), tc.model, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.side != "" {
				if err := os.WriteFile(filepath.Join(dir, Int8Model+".sha256"), []byte(tc.side), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := ReadInt8Model(dir)
			det, nerr := New(Config{ModelDir: dir, Precision: "int8"}, nil)
			if tc.want == "" {
				if err != nil || nerr != nil {
					t.Fatalf("intact model refused: %v, %v", err, nerr)
				}
				det.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), Int8Model) {
				t.Errorf("ReadInt8Model: %v, want an error naming %s and saying %q", err, Int8Model, tc.want)
			}
			if nerr == nil || !strings.Contains(nerr.Error(), Int8Model) {
				t.Errorf("precision int8: %v", nerr)
			}
			if det != nil {
				det.Close()
			}
		})
	}
	t.Run("auto leaves a bad one out", func(t *testing.T) {
		dir := t.TempDir()
		for name, b := range map[string][]byte{"centerface.onnx": f32, Int8Model: append(append([]byte(nil), good...), 0),
			Int8Model + ".sha256": []byte(side(sum(good), CenterFaceSHA256, Int8Recipe))} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		det, err := New(Config{ModelDir: dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer det.Close()
		if _, err := det.Detect(context.Background(), blur.Image{Width: 64, Height: 64, Pix: make([]byte, 64*64*3)}); err != nil {
			t.Fatal(err)
		}
		if p := det.(*OpenVINONet).Precision(); p == "int8" {
			t.Errorf("auto runs the edited int8 model")
		}
	})
}
