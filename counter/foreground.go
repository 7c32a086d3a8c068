package counter

import (
	"encoding/binary"
	"image"
)

// foreground finds moving people as blobs that differ from a learned
// background: a per-pixel running Gaussian on luminance at a working size
// of about workWidth px wide (each cell the mean of a 2x2 block at its
// centre), thresholded, cleaned with morphology and split into
// connected components. It runs on obscured frames, in pure Go, with no
// image kept beyond the background model (which a person standing still
// fades into within seconds; it holds no face, since its input was
// obscured).
type foreground struct {
	w, h    int // working size
	k       int // picture pixels per working pixel, each way
	mean    []float32
	vari    []float32
	frames  int
	mask    []uint8
	tmp     []uint8
	labels  []int32
	minArea int // in working pixels
}

// workWidth is about how wide the counter's working picture is. Half of a
// 768-px picture (vtest.avi, on which the counter was tuned) is 384; a
// 720p camera is counted at 427 px and 1080p at 384, instead of at half
// their size: the morphology and blob sizes then mean the same share of
// the scene at any resolution (the hand-labelled crossings score at least
// as well on vtest scaled to 1280x720, see the README), and the cost and
// the background model stop growing with the camera (at 720p 2.25 times
// fewer cells than at half size: at 14 bytes a cell, 1.4 MB of model
// instead of 3.2 MB a camera).
const workWidth = 400

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
	k := max(2, (width+workWidth/2)/workWidth)
	w, h := width/k, height/k
	n := w * h
	return &foreground{w: w, h: h, k: k, mean: make([]float32, n), vari: make([]float32, n),
		mask: make([]uint8, n), tmp: make([]uint8, n), labels: make([]int32, n),
		minArea: max(4, int(minArea*float64(n)))}
}

// blobs updates the model with a BGR24 frame and returns the boxes of
// moving blobs, in full-resolution pixels.
func (f *foreground) blobs(pix []byte, width int) []image.Rectangle {
	w, h, k := f.w, f.h, f.k
	off := (k - 2) / 2 // the 2x2 block at the centre of each k x k cell
	f.frames++
	warm := f.frames > fgWarmup
	alpha := float32(fgAlpha)
	if !warm {
		alpha = 1 / float32(f.frames) // running mean of the first frames
	}
	for y := 0; y < h; y++ {
		y0 := k*y + off
		r0 := pix[(y0*width+off)*3 : (y0*width+k*w)*3]
		r1 := pix[((y0+1)*width+off)*3 : ((y0+1)*width+k*w)*3]
		mean, vari, mask := f.mean[y*w:(y+1)*w], f.vari[y*w:(y+1)*w], f.mask[y*w:(y+1)*w]
		for x := range mask {
			o := 3 * k * x
			// Luminance of the 2x2 block (BT.601 weights in 1/1024ths),
			// summed in integers.
			b := int32(r0[o]) + int32(r0[o+3]) + int32(r1[o]) + int32(r1[o+3])
			g := int32(r0[o+1]) + int32(r0[o+4]) + int32(r1[o+1]) + int32(r1[o+4])
			r := int32(r0[o+2]) + int32(r0[o+5]) + int32(r1[o+2]) + int32(r1[o+5])
			v := float32(117*b+601*g+306*r) * (1.0 / 4096)
			if f.frames == 1 {
				mean[x], vari[x] = v, fgInitVar
				continue
			}
			d := v - mean[x]
			fg := d*d > fgK*fgK*vari[x] && (d > fgMinDiff || d < -fgMinDiff)
			a := alpha
			if fg && warm {
				a = fgAlphaFG
			}
			mean[x] += a * d
			vari[x] = max(vari[x]+a*(d*d-vari[x]), fgMinVar)
			if fg {
				mask[x] = 1
			} else {
				mask[x] = 0
			}
		}
	}
	if !warm {
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

// morph sets a pixel to keep if any pixel of its window is keep: a
// horizontal then a vertical pass. On a 0/1 mask that is an OR of the
// window's shifted rows (dilation) or an AND (erosion), done eight pixels
// at a time. (A loop over the window per pixel was most of the counter's
// time at 720p.)
func (f *foreground) morph(rx, ry int, keep uint8) {
	w, h := f.w, f.h
	op := orBytes
	if keep == 0 {
		op = andBytes
	}
	copy(f.tmp, f.mask)
	for y := 0; y < h; y++ {
		src, dst := f.mask[y*w:(y+1)*w], f.tmp[y*w:(y+1)*w]
		for k := 1; k <= rx && k < w; k++ {
			op(dst[k:], src[:w-k])
			op(dst[:w-k], src[k:])
		}
	}
	copy(f.mask, f.tmp)
	for y := 0; y < h; y++ {
		dst := f.mask[y*w : (y+1)*w]
		for k := 1; k <= ry; k++ {
			if y-k >= 0 {
				op(dst, f.tmp[(y-k)*w:(y-k+1)*w])
			}
			if y+k < h {
				op(dst, f.tmp[(y+k)*w:(y+k+1)*w])
			}
		}
	}
}

// orBytes sets dst[i] |= src[i], andBytes dst[i] &= src[i], over the
// shorter of the two, eight bytes at a time.
func orBytes(dst, src []byte) {
	n := min(len(dst), len(src))
	i := 0
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(dst[i:])|binary.LittleEndian.Uint64(src[i:]))
	}
	for ; i < n; i++ {
		dst[i] |= src[i]
	}
}

func andBytes(dst, src []byte) {
	n := min(len(dst), len(src))
	i := 0
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(dst[i:])&binary.LittleEndian.Uint64(src[i:]))
	}
	for ; i < n; i++ {
		dst[i] &= src[i]
	}
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
			k := f.k
			boxes = append(boxes, image.Rect(k*minX, k*minY, k*(maxX+1), k*(maxY+1)))
		}
	}
	return boxes
}
