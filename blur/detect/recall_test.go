package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/ingest"
)

// labels mirrors testdata/faces/labels.json: hand-drawn face boxes on real
// photos that scripts/fetch-testdata.sh fetches from packages.
type labels struct {
	Version int `json:"version"`
	Images  []struct {
		Name   string `json:"name"`
		File   string `json:"file"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
		Faces  []box  `json:"faces"`
		Ignore []box  `json:"ignore"`
	} `json:"images"`
}

type box struct {
	X, Y, W, H int
	Note       string
}

func (b box) rect() image.Rectangle { return image.Rect(b.X, b.Y, b.X+b.W, b.Y+b.H) }

func testdataDir(t testing.TB) string {
	d := os.Getenv("VEIL_CACHE")
	if d == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		d = filepath.Join(c, "veil")
	}
	return filepath.Join(d, "testdata", "faces")
}

func loadLabels(t testing.TB) labels {
	b, err := os.ReadFile("../../testdata/faces/labels.json")
	if err != nil {
		t.Fatal(err)
	}
	var l labels
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// loadBGR decodes a fetched test image; a missing one fails the test with
// the command that fetches it.
func loadBGR(t testing.TB, name string) *frame.Raw {
	path := filepath.Join(testdataDir(t), name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%v (run scripts/fetch-testdata.sh)", err)
	}
	raw, err := ingest.DecodeImage(path, "t")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func modelDir(t testing.TB) string {
	if testing.Short() {
		t.Skip("runs the face model (make models; the full suite runs it)")
	}
	d := DefaultModelDir()
	if err := VerifyModel(filepath.Join(d, "centerface.onnx"), CenterFaceSHA256); err != nil {
		t.Fatal(err)
	}
	return d
}

type score struct {
	faces, detected, obscured, falsePos int
	sceneKept                           float64 // fraction of non-face pixels unchanged
	ms                                  float64
	missed                              []string
}

// evaluate runs every labelled image through a real blur stage in fill
// mode and measures, per labelled face:
//   - detected: some detection has IoU >= 0.4 with the hand-drawn box;
//   - obscured: at least 90% of the box's pixels came out filled, which is
//     the property that matters for privacy.
//
// and over the rest of the picture how much of the scene was left as it was.
func evaluate(t *testing.T, det Detector, faceSize int) score {
	l := loadLabels(t)
	m, err := blur.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st, err := blur.New(blur.Config{Mode: blur.ModeFill, Deadline: time.Minute, Hold: -1, Search: blur.SearchFull}, blur.Deps{Detector: det, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	var s score
	var took time.Duration
	var kept, outside int
	for _, im := range l.Images {
		raw := loadBGR(t, im.File)
		if raw.Width != im.Width || raw.Height != im.Height {
			t.Fatalf("%s: %dx%d, labels say %dx%d", im.Name, raw.Width, raw.Height, im.Width, im.Height)
		}
		if faceSize > 0 {
			raw, im.Faces, im.Ignore = shrinkTo(raw, im.Faces, im.Ignore, faceSize)
			im.Width, im.Height = raw.Width, raw.Height
		}
		orig := append([]byte(nil), raw.Pix...)
		start := time.Now()
		dets, err := det.Detect(context.Background(), blur.Image{Width: raw.Width, Height: raw.Height, Pix: raw.Pix})
		took += time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", im.Name, err)
		}
		if err := st.WarmUp(context.Background(), 64, 64); err != nil {
			t.Fatal(err)
		}
		out, err := st.Obscure(context.Background(), raw)
		if err != nil || out.FailClosed() != "" {
			t.Fatalf("%s: %v %q", im.Name, err, out.FailClosed())
		}
		pix := out.Pix()
		for _, f := range im.Faces {
			s.faces++
			fr := f.rect()
			hit := false
			for _, d := range dets {
				if iouOf(d.Box, fr) >= 0.4 {
					hit = true
				}
			}
			if hit {
				s.detected++
			}
			black, n := 0, 0
			for y := fr.Min.Y; y < fr.Max.Y; y++ {
				for x := fr.Min.X; x < fr.Max.X; x++ {
					i := (y*im.Width + x) * 3
					n++
					if pix[i] == 0 && pix[i+1] == 0 && pix[i+2] == 0 {
						black++
					}
				}
			}
			if float64(black) >= 0.9*float64(n) {
				s.obscured++
			} else {
				s.missed = append(s.missed, fmt.Sprintf("%s@%d,%d(%dx%d %s)", im.Name, f.X, f.Y, f.W, f.H, f.Note))
			}
		}
	detLoop:
		for _, d := range dets {
			for _, f := range append(append([]box(nil), im.Faces...), im.Ignore...) {
				if d.Box.Overlaps(f.rect()) {
					continue detLoop
				}
			}
			s.falsePos++
		}
		for y := 0; y < im.Height; y++ {
		px:
			for x := 0; x < im.Width; x++ {
				for _, f := range im.Faces {
					if image.Pt(x, y).In(f.rect().Inset(-f.W / 2)) {
						continue px
					}
				}
				i := (y*im.Width + x) * 3
				outside++
				if pix[i] == orig[i] && pix[i+1] == orig[i+1] && pix[i+2] == orig[i+2] {
					kept++
				}
			}
		}
	}
	s.sceneKept = float64(kept) / float64(outside)
	s.ms = float64(took.Milliseconds()) / float64(len(l.Images))
	return s
}

// shrinkTo downsamples a picture by an integer factor (area average) so
// that its median labelled face is about size pixels wide, the way faces
// look on a CCTV camera mounted high over a room; the labels shrink with it.
func shrinkTo(raw *frame.Raw, faces, ignore []box, size int) (*frame.Raw, []box, []box) {
	ws := make([]int, len(faces))
	for i, f := range faces {
		ws[i] = f.W
	}
	sort.Ints(ws)
	k := max(1, (ws[len(ws)/2]+size/2)/size)
	w, h := raw.Width/k, raw.Height/k
	out := frame.NewRaw(raw.Meta, w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var s [3]int
			for dy := 0; dy < k; dy++ {
				for dx := 0; dx < k; dx++ {
					i := ((y*k+dy)*raw.Width + x*k + dx) * 3
					s[0], s[1], s[2] = s[0]+int(raw.Pix[i]), s[1]+int(raw.Pix[i+1]), s[2]+int(raw.Pix[i+2])
				}
			}
			o := (y*w + x) * 3
			out.Pix[o], out.Pix[o+1], out.Pix[o+2] = byte(s[0]/(k*k)), byte(s[1]/(k*k)), byte(s[2]/(k*k))
		}
	}
	scale := func(bs []box) []box {
		r := make([]box, len(bs))
		for i, b := range bs {
			r[i] = box{X: b.X / k, Y: b.Y / k, W: max(1, b.W/k), H: max(1, b.H/k), Note: b.Note}
		}
		return r
	}
	return out, scale(faces), scale(ignore)
}

func iouOf(a, b image.Rectangle) float64 { return blur.IoU(a, b) }

// TestRecallOnLabelledPhotos reports recall for every detector candidate,
// on the photos as they are and shrunk so that faces are about 16 px wide
// (CCTV size), and holds the default to a floor. The figures go into the
// README.
func TestRecallOnLabelledPhotos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the CNN on nine full-size pictures")
	}
	dir := modelDir(t)
	cases := []struct {
		name        string
		cfg         Config
		faceSize    int     // shrink faces to about this width; 0 keeps the photo
		minObscured float64 // floor on the share of faces obscured
	}{
		{"centerface", Config{Kind: KindCenterFace, ModelDir: dir}, 0, 0.95}, // the default: OpenVINO, its precision
		{"cf-ov-f32", Config{Kind: KindCenterFace, ModelDir: dir, Precision: "f32"}, 0, 0.95},
		{"cf-ov-bf16", Config{Kind: KindCenterFace, ModelDir: dir, Precision: "bf16"}, 0, 0.95},
		{"cf-ov-int8", Config{Kind: KindCenterFace, ModelDir: dir, Precision: "int8"}, 0, 0.95},
		{"cf-opencv", Config{Kind: KindCenterFace, ModelDir: dir, Runtime: RuntimeOpenCV}, 0, 0.95},
		{"cf-onnxrt", Config{Kind: KindCenterFace, ModelDir: dir, Runtime: RuntimeONNXRuntime}, 0, 0.95},
		{"centerface-2x", Config{Kind: KindCenterFace, ModelDir: dir, Scale: 2}, 0, 0},
		{"haar", Config{Kind: KindHaar}, 0, 0},
		{"centerface", Config{Kind: KindCenterFace, ModelDir: dir}, 16, 0.9},
		{"cf-ov-f32", Config{Kind: KindCenterFace, ModelDir: dir, Precision: "f32"}, 16, 0.9},
		{"cf-ov-bf16", Config{Kind: KindCenterFace, ModelDir: dir, Precision: "bf16"}, 16, 0.9},
		{"cf-ov-int8", Config{Kind: KindCenterFace, ModelDir: dir, Precision: "int8"}, 16, 0.9},
		{"cf-opencv", Config{Kind: KindCenterFace, ModelDir: dir, Runtime: RuntimeOpenCV}, 16, 0.9},
		{"cf-onnxrt", Config{Kind: KindCenterFace, ModelDir: dir, Runtime: RuntimeONNXRuntime}, 16, 0.9},
		{"centerface-2x", Config{Kind: KindCenterFace, ModelDir: dir, Scale: 2}, 16, 0},
		{"haar", Config{Kind: KindHaar}, 16, 0},
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n%-14s %5s %6s %9s %9s %7s %10s %8s\n", "detector", "face", "faces", "detected", "obscured", "false+", "scene kept", "ms/img")
	for _, tc := range cases {
		det, err := New(tc.cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := evaluate(t, det, tc.faceSize)
		det.Close()
		size := "photo"
		if tc.faceSize > 0 {
			size = fmt.Sprintf("~%dpx", tc.faceSize)
		}
		fmt.Fprintf(&report, "%-14s %5s %6d %8.0f%% %8.0f%% %7d %9.1f%% %8.0f\n", tc.name, size, s.faces,
			100*float64(s.detected)/float64(s.faces), 100*float64(s.obscured)/float64(s.faces), s.falsePos, 100*s.sceneKept, s.ms)
		if len(s.missed) > 0 {
			fmt.Fprintf(&report, "    not obscured: %s\n", strings.Join(s.missed, ", "))
		}
		if got := float64(s.obscured) / float64(s.faces); got < tc.minObscured {
			t.Errorf("%s at %s: obscured %.0f%% of labelled faces, floor %.0f%%", tc.name, size, 100*got, 100*tc.minObscured)
		}
		if tc.minObscured > 0 && s.sceneKept < 0.8 {
			t.Errorf("%s at %s: only %.0f%% of the scene outside faces kept", tc.name, size, 100*s.sceneKept)
		}
	}
	t.Log(report.String())
}
