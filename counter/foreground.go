package counter

import "image"

// foreground finds moving people as blobs that differ from a learned
// background: a per-pixel running Gaussian on luminance at half
// resolution, thresholded, cleaned with morphology and split into
// connected components. It runs on obscured frames, in pure Go, with no
// image kept beyond the background model (which a person standing still
// fades into within seconds; it holds no face, since its input was
// obscured).
type foreground struct {
	w, h    int // half-resolution size
	mean    []float32
	vari    []float32
	frames  int
	mask    []uint8
	tmp     []uint8
	labels  []int32
	minArea int // in half-resolution pixels
}

const (
	fgK       = 2.5  // a pixel is foreground beyond this many sigmas
	fgMinDiff = 12.0 // and at least this many grey levels away
	fgAlpha   = 0.02 // background learning rate
	fgAlphaFG = 0.002
	fgWarmup  = 30 // frames learnt with a fast rate before blobs are reported
	fgInitVar = 15 * 15
	fgMinVar  = 4 * 4
)

func newForeground(width, height int, minArea float64) *foreground {
	w, h := width/2, height/2
	n := w * h
	return &foreground{w: w, h: h, mean: make([]float32, n), vari: make([]float32, n),
		mask: make([]uint8, n), tmp: make([]uint8, n), labels: make([]int32, n),
		minArea: max(4, int(minArea*float64(n)))}
}

// blobs updates the model with a BGR24 frame and returns the boxes of
// moving blobs, in full-resolution pixels.
func (f *foreground) blobs(pix []byte, width int) []image.Rectangle {
	w, h := f.w, f.h
	f.frames++
	alpha := float32(fgAlpha)
	if f.frames <= fgWarmup {
		alpha = 1 / float32(f.frames) // running mean of the first frames
	}
	for y := 0; y < h; y++ {
		r0 := (2 * y * width) * 3
		r1 := ((2*y + 1) * width) * 3
		for x := 0; x < w; x++ {
			o0, o1 := r0+6*x, r1+6*x
			// Luminance of the 2x2 block (BT.601 weights, x4 pixels).
			s := 0.114*float32(int(pix[o0])+int(pix[o0+3])+int(pix[o1])+int(pix[o1+3])) +
				0.587*float32(int(pix[o0+1])+int(pix[o0+4])+int(pix[o1+1])+int(pix[o1+4])) +
				0.299*float32(int(pix[o0+2])+int(pix[o0+5])+int(pix[o1+2])+int(pix[o1+5]))
			v := s / 4
			i := y*w + x
			if f.frames == 1 {
				f.mean[i], f.vari[i] = v, fgInitVar
				continue
			}
			d := v - f.mean[i]
			fg := d*d > fgK*fgK*f.vari[i] && (d > fgMinDiff || d < -fgMinDiff)
			a := alpha
			if fg && f.frames > fgWarmup {
				a = fgAlphaFG
			}
			f.mean[i] += a * d
			f.vari[i] += a * (d*d - f.vari[i])
			if f.vari[i] < fgMinVar {
				f.vari[i] = fgMinVar
			}
			if fg {
				f.mask[i] = 1
			} else {
				f.mask[i] = 0
			}
		}
	}
	if f.frames <= fgWarmup {
		return nil
	}
	// Open (remove speckle), then close vertically harder than
	// horizontally to join a person's head, torso and legs without merging
	// people walking side by side.
	f.erode(1, 1)
	f.dilate(1, 1)
	f.dilate(1, 3)
	f.erode(1, 3)
	return f.components()
}

// erode and dilate with a (2rx+1)x(2ry+1) rectangle, separably.
func (f *foreground) erode(rx, ry int)  { f.morph(rx, ry, 0) }
func (f *foreground) dilate(rx, ry int) { f.morph(rx, ry, 1) }

func (f *foreground) morph(rx, ry int, keep uint8) {
	w, h := f.w, f.h
	// A pixel becomes `keep` if any neighbour in the window is `keep`.
	pass := func(src, dst []uint8, horizontal bool, r int) {
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
					if xx < 0 || yy < 0 || xx >= w || yy >= h {
						continue
					}
					if src[yy*w+xx] == keep {
						out = keep
						break
					}
				}
				dst[y*w+x] = out
			}
		}
	}
	pass(f.mask, f.tmp, true, rx)
	pass(f.tmp, f.mask, false, ry)
}

// components labels 4-connected foreground regions and returns the boxes
// of those large enough to be a person.
func (f *foreground) components() []image.Rectangle {
	w, h := f.w, f.h
	clear(f.labels)
	var boxes []image.Rectangle
	stack := make([]int32, 0, 256)
	var next int32
	for start := 0; start < w*h; start++ {
		if f.mask[start] == 0 || f.labels[start] != 0 {
			continue
		}
		next++
		f.labels[start] = next
		stack = append(stack[:0], int32(start))
		area := 0
		minX, minY, maxX, maxY := w, h, -1, -1
		for len(stack) > 0 {
			i := int(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
			area++
			x, y := i%w, i/w
			minX, maxX = min(minX, x), max(maxX, x)
			minY, maxY = min(minY, y), max(maxY, y)
			for _, j := range [4]int{i - 1, i + 1, i - w, i + w} {
				if j < 0 || j >= w*h || (j == i-1 && x == 0) || (j == i+1 && x == w-1) {
					continue
				}
				if f.mask[j] == 1 && f.labels[j] == 0 {
					f.labels[j] = next
					stack = append(stack, int32(j))
				}
			}
		}
		if area >= f.minArea {
			boxes = append(boxes, image.Rect(2*minX, 2*minY, 2*(maxX+1), 2*(maxY+1)))
		}
	}
	return boxes
}
