package frame

import "testing"

// TestReuseGivesBackReleasedBuffers: a released buffer comes back for a
// picture of its size and never for another size; a released frame has
// no pixels left to read.
func TestReuseGivesBackReleasedBuffers(t *testing.T) {
	for _, tc := range []struct {
		name         string
		relW, relH   int
		getW, getH   int
		wantRecycled bool
	}{
		{"same size", 64, 48, 64, 48, true},
		{"other size", 64, 48, 48, 64 + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRaw(Meta{}, tc.relW, tc.relH)
			r.Pix[0] = 7
			first := &r.Pix[0]
			r.Release()
			if r.Pix != nil {
				t.Fatal("a released frame kept its pixels")
			}
			// sync.Pool may drop what it holds at any collection; try a few
			// times so that the test is not at the mercy of one.
			recycled := false
			for i := 0; i < 5 && !recycled; i++ {
				g := Reuse(Meta{Seq: 9}, tc.getW, tc.getH)
				if err := g.Validate(); err != nil {
					t.Fatal(err)
				}
				recycled = &g.Pix[0] == first
				if g.Seq != 9 || g.Width != tc.getW || g.Height != tc.getH {
					t.Fatalf("got %+v", g.Meta)
				}
				g.Release()
			}
			if recycled != tc.wantRecycled {
				t.Errorf("recycled %v, want %v", recycled, tc.wantRecycled)
			}
		})
	}
	var nilRaw *Raw
	nilRaw.Release() // safe, as a queue may hold a nil
	(&Raw{}).Release()
}

// BenchmarkReuse is what a dropped-and-redecoded 720p frame costs with the
// pool against a fresh allocation.
func BenchmarkReuse(b *testing.B) {
	b.Run("reuse", func(b *testing.B) {
		for b.Loop() {
			Reuse(Meta{}, 1280, 720).Release()
		}
	})
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			r := NewRaw(Meta{}, 1280, 720)
			r.Pix = nil
		}
	})
}
