package blur

import (
	"image"
	"math"
)

// motion finds where a camera's picture changed, cheaply: on a small grey
// copy of each frame (160 px wide) against a running average of the
// previous ones, as Frigate does. It reports the changed areas as boxes in
// frame pixels, and a scene change (lights switched, camera moved, first
// frame) when too much changed to say where.
type motion struct {
	sw, sh, w, h int
	grey, bg     []float32
	mask, seen   []bool
	queue        []int
	seq          uint64 // of the frame the average last learned from
}

const (
	motionWidth     = 160
	motionThreshold = 18   // grey levels a pixel must differ from the average by
	motionAlpha     = 0.1  // weight of the new frame in the running average
	sceneChange     = 0.45 // changed fraction of the picture that is a scene change
	minBlob         = 3    // small pixels; less is noise
	maxMotionSteps  = 30   // a longer gap counts as this many frames (the average is then nearly the frame)
)

// update takes the BGR frame numbered seq (the decoder's count) and
// returns the changed boxes, or scene true. A frame that follows frames
// dropped before blur stands for them too: the average learns as much as
// they would have taught it, so that it forgets a moving person's past
// positions at the same pace in time whether or not frames are dropped;
// learning once per frame received made the trails, and the regions
// searched, a third larger with every other frame dropped.
func (m *motion) update(pix []byte, w, h int, seq uint64) (boxes []image.Rectangle, scene bool) {
	steps := 1
	if seq > m.seq {
		steps = int(min(seq-m.seq, maxMotionSteps))
	}
	m.seq = seq
	if w != m.w || h != m.h { // the first frame, or a new size: steps do not matter
		m.w, m.h = w, h
		m.sw = min(motionWidth, w)
		m.sh = max(1, int(math.Round(float64(h)*float64(m.sw)/float64(w))))
		n := m.sw * m.sh
		m.grey, m.bg = make([]float32, n), make([]float32, n)
		m.mask, m.seen = make([]bool, n), make([]bool, n)
		m.shrink(pix)
		copy(m.bg, m.grey)
		return nil, true
	}
	m.shrink(pix)
	alpha := float32(motionAlpha)
	if steps > 1 {
		alpha = float32(1 - math.Pow(1-motionAlpha, float64(min(steps, maxMotionSteps))))
	}
	changed := 0
	for i, g := range m.grey {
		d := g - m.bg[i]
		m.mask[i] = d > motionThreshold || d < -motionThreshold
		if m.mask[i] {
			changed++
		}
		m.bg[i] += alpha * d
	}
	if float64(changed) > sceneChange*float64(len(m.grey)) {
		copy(m.bg, m.grey)
		return nil, true
	}
	if changed == 0 {
		return nil, false
	}
	return m.blobs(), false
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
