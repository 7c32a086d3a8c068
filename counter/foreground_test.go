package counter

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// refMorph is morphology written plainly: a pixel becomes keep if any
// pixel of its (2rx+1)x(2ry+1) window, clipped to the picture, is keep
// (horizontal pass, then vertical, as the separable filter is defined).
func refMorph(mask []uint8, w, h, rx, ry int, keep uint8) []uint8 {
	pass := func(src []uint8, horizontal bool, r int) []uint8 {
		dst := make([]uint8, len(src))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				out := 1 - keep
				for k := -r; k <= r; k++ {
					xx, yy := x, y
					if horizontal {
						xx += k
					} else {
						yy += k
					}
					if xx >= 0 && yy >= 0 && xx < w && yy < h && src[yy*w+xx] == keep {
						out = keep
					}
				}
				dst[y*w+x] = out
			}
		}
		return dst
	}
	return pass(pass(mask, true, rx), false, ry)
}

// TestMorphMatchesPlainFilter checks the running-count morphology against
// the plain one on random masks of random sizes and densities, for the
// radii the counter uses and larger ones than the picture.
func TestMorphMatchesPlainFilter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		w, h := 1+rng.IntN(40), 1+rng.IntN(40)
		f := newForeground(2*w, 2*h, 0)
		density := rng.Float64()
		for j := range f.mask {
			if rng.Float64() < density {
				f.mask[j] = 1
			}
		}
		rx, ry, keep := rng.IntN(5), rng.IntN(5), uint8(rng.IntN(2))
		want := refMorph(f.mask, w, h, rx, ry, keep)
		f.morph(rx, ry, keep)
		if !bytes.Equal(f.mask, want) {
			t.Fatalf("%dx%d r=(%d,%d) keep=%d: running-count morphology differs from the plain filter", w, h, rx, ry, keep)
		}
	}
}
