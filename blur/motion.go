package blur

import (
	"image"
	"math"
)

// motion finds where a camera's picture changed since the detector last
// searched it, cheaply: on a small grey copy of each frame (160 px wide).
// It keeps, for each small pixel, the grey it had when a search last
// covered it (ref), and reports the changed areas as boxes in frame
// pixels, or a scene change (lights switched, camera moved, first frame)
// when too much changed to say where. A change stays reported until a
// search covers it (searched): a frame that failed closed, or was dropped
// before blur, leaves it pending for the next.
//
// A running average of past frames (as Frigate keeps) was used first: it
// reported where the picture differed from its recent past, so a walking
// person left a trail of "motion" where they had been for a second or
// more, already searched; on a busy street the regions searched were
// larger than those of what changed since the last search (measured:
// docs/benchmarks/figures-from-code-comments.md), and a slow drift (a
// face turning by a few grey levels a frame) never differed enough from
// an average that followed it.
type motion struct {
	sw, sh, w, h int
	grey, ref    []float32
	mask, seen   []bool
	queue        []int
}

const (
	motionWidth     = 160
	motionThreshold = 18   // grey levels a pixel must differ from what was searched there
	sceneChange     = 0.45 // changed fraction of the picture that is a scene change
	minBlob         = 3    // small pixels; less is noise
)

// update takes a BGR frame and returns the boxes where it differs from
// what the searches saw, or scene true. It does not mark anything
// searched: searched and searchedAll do, once a search has succeeded.
func (m *motion) update(pix []byte, w, h int) (boxes []image.Rectangle, scene bool) {
	if w != m.w || h != m.h { // the first frame, or a new size: nothing searched yet
		m.w, m.h = w, h
		m.sw = min(motionWidth, w)
		m.sh = max(1, int(math.Round(float64(h)*float64(m.sw)/float64(w))))
		n := m.sw * m.sh
		m.grey, m.ref = make([]float32, n), nil
		m.mask, m.seen = make([]bool, n), make([]bool, n)
		m.shrink(pix)
		return nil, true
	}
	m.shrink(pix)
	if m.ref == nil { // no search has succeeded at this size yet
		return nil, true
	}
	changed := 0
	for i, g := range m.grey {
		d := g - m.ref[i]
		m.mask[i] = d > motionThreshold || d < -motionThreshold
		if m.mask[i] {
			changed++
		}
	}
	if float64(changed) > sceneChange*float64(len(m.grey)) {
		return nil, true
	}
	if changed == 0 {
		return nil, false
	}
	return m.blobs(), false
}

// searchedAll records that the last frame given to update was searched
// whole.
func (m *motion) searchedAll() {
	if m.ref == nil {
		m.ref = make([]float32, len(m.grey))
	}
	copy(m.ref, m.grey)
}

// searched records that the crops (frame pixels) of the last frame given to
// update were searched: the small pixels wholly inside one of them now
// read as that frame. One only partly inside keeps its old grey, so a
// change there is searched again.
func (m *motion) searched(crops []image.Rectangle) {
	if m.ref == nil {
		return
	}
	for _, c := range crops {
		// Small pixel x spans frame columns [x*w/sw, (x+1)*w/sw).
		x0 := max(0, (c.Min.X*m.sw+m.w-1)/m.w)
		y0 := max(0, (c.Min.Y*m.sh+m.h-1)/m.h)
		x1 := min(m.sw, c.Max.X*m.sw/m.w)
		y1 := min(m.sh, c.Max.Y*m.sh/m.h)
		if x0 >= x1 {
			continue
		}
		for y := y0; y < y1; y++ {
			copy(m.ref[y*m.sw+x0:y*m.sw+x1], m.grey[y*m.sw+x0:y*m.sw+x1])
		}
	}
}

// shrink samples the frame into grey at the small size: the mean of four
// points in each cell, (B + 2G + R) / 4.
func (m *motion) shrink(pix []byte) {
	for y := 0; y < m.sh; y++ {
		y0 := y * m.h / m.sh
		y1 := min(m.h-1, y0+max(1, m.h/m.sh/2))
		for x := 0; x < m.sw; x++ {
			x0 := x * m.w / m.sw
			x1 := min(m.w-1, x0+max(1, m.w/m.sw/2))
			s := 0
			for _, p := range [4]int{(y0*m.w + x0) * 3, (y0*m.w + x1) * 3, (y1*m.w + x0) * 3, (y1*m.w + x1) * 3} {
				s += int(pix[p]) + 2*int(pix[p+1]) + int(pix[p+2])
			}
			m.grey[y*m.sw+x] = float32(s) / 16
		}
	}
}

// blobs groups changed small pixels (8-connected, with a one-pixel gap
// bridged) into boxes in frame pixels.
func (m *motion) blobs() []image.Rectangle {
	clear(m.seen)
	var out []image.Rectangle
	sx, sy := float64(m.w)/float64(m.sw), float64(m.h)/float64(m.sh)
	for start, on := range m.mask {
		if !on || m.seen[start] {
			continue
		}
		m.seen[start] = true
		m.queue = append(m.queue[:0], start)
		x0, y0, x1, y1, n := m.sw, m.sh, -1, -1, 0
		for len(m.queue) > 0 {
			i := m.queue[len(m.queue)-1]
			m.queue = m.queue[:len(m.queue)-1]
			n++
			x, y := i%m.sw, i/m.sw
			x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
			for dy := -2; dy <= 2; dy++ {
				for dx := -2; dx <= 2; dx++ {
					nx, ny := x+dx, y+dy
					if nx < 0 || ny < 0 || nx >= m.sw || ny >= m.sh {
						continue
					}
					j := ny*m.sw + nx
					if m.mask[j] && !m.seen[j] {
						m.seen[j] = true
						m.queue = append(m.queue, j)
					}
				}
			}
		}
		if n < minBlob {
			continue
		}
		out = append(out, image.Rect(int(float64(x0)*sx), int(float64(y0)*sy), int(math.Ceil(float64(x1+1)*sx)), int(math.Ceil(float64(y1+1)*sy))))
	}
	return out
}
