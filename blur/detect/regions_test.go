package detect

import (
	"context"
	"fmt"
	"image"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/frame"
)

// regionStage is a regions-mode stage (the cameras' default) around det,
// with a deadline no test machine misses.
func regionStage(tb testing.TB, det blur.Detector) *blur.Stage {
	m, err := blur.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	st, err := blur.New(blur.Config{Search: blur.SearchRegions, Deadline: time.Minute}, blur.Deps{Camera: "vtest", Detector: det, Metrics: m})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// TestRegionSearchCoversWhatFullSearchFinds: on real footage (vtest.avi,
// people walking, scaled to 1280x720 as a camera would send it), a stage
// in regions mode (the cameras' default: motion crops, held faces, a
// sweep a second) obscures every face that a full-frame search of the same
// raw frame scores above 0.5 (every other frame is checked). A face counts as obscured when at least 80%
// of its box's pixels changed. This is the claim of ARCHITECTURE.md's
// "why no face passes between sweeps", measured with the real detector.
func TestRegionSearchCoversWhatFullSearchFinds(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the CNN on 240 frames, and on every other one twice")
	}
	const w, h, frames = 1280, 720, 240
	// Scaled as a camera would send it, read once for both runs.
	clip := readClip(t, w, h, frames)
	dir := modelDir(t)
	ref, err := New(Config{ModelDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	det, err := New(Config{ModelDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	// every: the stage gets every frame, or only every other one, as when
	// the engine falls behind and frames are dropped before blur (changes
	// then add up over two frames before they are searched).
	for _, every := range []int{1, 2} {
		t.Run(fmt.Sprintf("every %d", every), func(t *testing.T) { regionSearchCovers(t, clip, w, h, every, ref, det) })
	}
}

func regionSearchCovers(t *testing.T, clip [][]byte, w, h, every int, ref, det Detector) {
	frames := len(clip)
	st := regionStage(t, det)
	defer st.Close(context.Background())
	faces, covered := 0, 0
	for i, pix := range clip {
		if i%every != 0 {
			continue // dropped before blur
		}
		raw := &frame.Raw{Meta: frame.Meta{Seq: uint64(i), PTS: time.Duration(i) * 100 * time.Millisecond}, Width: w, Height: h, Pix: append([]byte(nil), pix...)}
		out, err := st.Obscure(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		if r := out.FailClosed(); r != "" {
			t.Fatalf("frame %d failed closed (%s) with a working detector", i, r)
		}
		if (i/every)%2 == 1 { // every frame given goes through the stage; every other one is checked
			continue
		}
		want, err := ref.Detect(context.Background(), blur.Image{Width: w, Height: h, Pix: pix})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range want {
			if d.Score < 0.5 {
				continue
			}
			faces++
			b := d.Box.Intersect(image.Rect(0, 0, w, h))
			changed := 0
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					o := (y*w + x) * 3
					if pix[o] != out.Pix()[o] || pix[o+1] != out.Pix()[o+1] || pix[o+2] != out.Pix()[o+2] {
						changed++
					}
				}
			}
			if 5*changed >= 4*b.Dx()*b.Dy() {
				covered++
			} else {
				t.Errorf("frame %d: face %v (full-frame score %.2f) was not obscured by region search", i, b, d.Score)
			}
		}
	}
	t.Logf("region search obscured %d of the %d faces a full-frame search scored above 0.5, on %d frames of %d", covered, faces, frames/every/2, frames)
	if faces < 25/every {
		t.Errorf("only %d faces in %d frames: the footage no longer tests anything", faces, frames)
	}
}
