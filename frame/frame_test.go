package frame

import "testing"

// TestReuseGivesBackReleasedBuffers: a released buffer comes back for a
// picture of its size and never for another size; a released frame has
// no pixels left to read.
func TestReuseGivesBackReleasedBuffers(t *testing.T) {
	resetPools(t)
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

// TestReleaseBoundsItsSizes: a camera whose picture size keeps changing
// cannot make the pool keep a pool per size without end.
func TestReleaseBoundsItsSizes(t *testing.T) {
	resetPools(t)
	for i := 0; i < 2*maxPoolSizes; i++ {
		NewRaw(Meta{}, 16+i, 16).Release()
	}
	poolsMu.Lock()
	n := poolSizes
	poolsMu.Unlock()
	if n > maxPoolSizes {
		t.Errorf("%d picture sizes pooled, at most %d wanted", n, maxPoolSizes)
	}
	r := NewRaw(Meta{}, 1000, 3)
	r.Release() // a size past the bound: dropped, not pooled
	if r.Pix != nil {
		t.Error("a frame released past the bound kept its pixels")
	}
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

// resetPools empties the package's pools for a test and after it.
func resetPools(t *testing.T) {
	reset := func() {
		poolsMu.Lock()
		pools.Clear()
		poolSizes = 0
		poolsMu.Unlock()
	}
	reset()
	t.Cleanup(reset)
}
