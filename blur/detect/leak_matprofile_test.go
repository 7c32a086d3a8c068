//go:build matprofile

package detect

import (
	"context"
	"testing"

	"gocv.io/x/gocv"

	"github.com/veilproject/veil/blur"
)

// TestNoMatLeft runs both detectors over several sizes and asserts that
// every gocv.Mat they made was closed (gocv counts live Mats under the
// matprofile build tag).
func TestNoMatLeft(t *testing.T) {
	before := gocv.MatProfile.Count()
	for _, cfg := range []Config{{ModelDir: modelDir(t)}, {Kind: KindHaar}} {
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
	}
	if n := gocv.MatProfile.Count() - before; n != 0 {
		t.Errorf("%d gocv.Mat left open", n)
	}
}
