package blur

import (
	"fmt"
	"image"
)

// Mode is how a face region is obscured. Each mode destroys the detail a
// recogniser needs; mild Gaussian blur, which neural networks see through
// (McPherson et al. 2016), is deliberately not offered.
type Mode string

const (
	// ModeBlur replaces the region with a three-pass box blur whose kernel is
	// BlurKernel times the region's larger side (at least half of it), which
	// leaves a smooth colour blob.
	ModeBlur Mode = "blur"
	// ModeMosaic replaces the region with at most MosaicCells flat cells
	// across its larger side.
	ModeMosaic Mode = "mosaic"
	// ModeFill paints the region flat black.
	ModeFill Mode = "fill"
)

// Limits that keep every mode irreversible; Config.Validate enforces them.
const (
	MaxMosaicCells = 8
	MinBlurKernel  = 0.5
)

// obscurer applies one mode to regions of a BGR24 picture.
type obscurer struct {
	mode        Mode
	mosaicCells int
	blurKernel  float64
	tmp         []int32
	rows        []byte  // a copy of the region, for the vertical passes
	sums        []int32 // running sums of every column of the region
}

func (o *obscurer) region(pix []byte, width, height int, r image.Rectangle) {
	r = r.Intersect(image.Rect(0, 0, width, height))
	if r.Empty() {
		return
	}
	switch o.mode {
	case ModeFill:
		fill(pix, width, r)
	case ModeMosaic:
		side := max(r.Dx(), r.Dy())
		cell := (side + o.mosaicCells - 1) / o.mosaicCells
		mosaic(pix, width, r, max(cell, 1))
	default:
		k := int(float64(max(r.Dx(), r.Dy())) * o.blurKernel)
		o.boxBlur(pix, width, r, max(k, 3))
	}
}

// whole obscures the entire picture for a fail-closed frame, whatever the
// mode: a mosaic of MaxMosaicCells cells across the larger side, then a
// box blur as wide as a cell. A face, even one filling the frame, is then
// at most 8 cells across (the limit blur holds faces to) with the cell
// edges smoothed away, so no face size survives it; the scene's layout and
// colours stay readable for security staff.
func (o *obscurer) whole(pix []byte, width, height int) {
	cell := wholeCell(width, height)
	r := image.Rect(0, 0, width, height)
	mosaic(pix, width, r, cell)
	o.boxBlur(pix, width, r, cell)
}

// wholeCell is the mosaic cell of a fail-closed frame.
func wholeCell(width, height int) int {
	side := max(width, height)
	return max((side+MaxMosaicCells-1)/MaxMosaicCells, 1)
}

func fill(pix []byte, width int, r image.Rectangle) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := pix[(y*width+r.Min.X)*3 : (y*width+r.Max.X)*3]
		clear(row)
	}
}

func mosaic(pix []byte, width int, r image.Rectangle, cell int) {
	for cy := r.Min.Y; cy < r.Max.Y; cy += cell {
		ey := min(cy+cell, r.Max.Y)
		for cx := r.Min.X; cx < r.Max.X; cx += cell {
			ex := min(cx+cell, r.Max.X)
			var sb, sg, sr, n int
			for y := cy; y < ey; y++ {
				row := pix[(y*width+cx)*3 : (y*width+ex)*3]
				for i := 0; i < len(row); i += 3 {
					sb += int(row[i])
					sg += int(row[i+1])
					sr += int(row[i+2])
				}
				n += ex - cx
			}
			b, g, rr := byte(sb/n), byte(sg/n), byte(sr/n)
			for y := cy; y < ey; y++ {
				row := pix[(y*width+cx)*3 : (y*width+ex)*3]
				for i := 0; i < len(row); i += 3 {
					row[i], row[i+1], row[i+2] = b, g, rr
				}
			}
		}
	}
}

// boxBlur runs three box-filter passes in each direction over r, sampling
// only pixels inside r (edges clamp), so nothing from outside leaks in and
// nothing of the face survives a kernel that large.
func (o *obscurer) boxBlur(pix []byte, width int, r image.Rectangle, k int) {
	w, h := r.Dx(), r.Dy()
	n := max(w, h)
	if cap(o.tmp) < n*3 {
		o.tmp = make([]int32, n*3)
	}
	line := o.tmp[:n*3]
	radius := k / 2
	for pass := 0; pass < 3; pass++ {
		for y := r.Min.Y; y < r.Max.Y; y++ {
			off := (y*width + r.Min.X) * 3
			blurLine(pix[off:off+w*3], 3, w, radius, line)
		}
		o.blurColumns(pix, width, r, radius)
	}
}

// blurColumns box-filters every column of r at once, exactly as blurLine
// would one column at a time, but row by row: the running sums of all
// columns move down together, so memory is read in order instead of one
// pixel a row apart (that cut a whole-frame blur at 1280x720 to a
// fraction of its time; measured:
// docs/benchmarks/figures-from-code-comments.md).
func (o *obscurer) blurColumns(pix []byte, width int, r image.Rectangle, radius int) {
	w, h := r.Dx(), r.Dy()
	row := 3 * w
	if cap(o.rows) < row*h {
		o.rows = make([]byte, row*h)
	}
	if cap(o.sums) < row {
		o.sums = make([]int32, row)
	}
	rows, sums := o.rows[:row*h], o.sums[:row]
	for y := 0; y < h; y++ {
		off := ((r.Min.Y+y)*width + r.Min.X) * 3
		copy(rows[y*row:(y+1)*row], pix[off:off+row])
	}
	at := func(i int) []byte {
		i = min(max(i, 0), h-1)
		return rows[i*row : (i+1)*row]
	}
	clear(sums)
	for i := -radius; i <= radius; i++ {
		for x, v := range at(i) {
			sums[x] += int32(v)
		}
	}
	d := newDivider(2*radius + 1)
	for y := 0; y < h; y++ {
		off := ((r.Min.Y+y)*width + r.Min.X) * 3
		dst := pix[off : off+row]
		for x := range dst {
			dst[x] = d.div(sums[x])
		}
		add, sub := at(y+radius+1), at(y-radius)
		for x := range sums {
			sums[x] += int32(add[x]) - int32(sub[x])
		}
	}
	// The copy held pixels of the picture as it was being obscured: wipe it.
	clear(rows)
}

// blurLine box-filters n pixels spaced stride bytes apart, in place, with a
// running sum over a window of 2*radius+1 clamped to the line.
func blurLine(p []byte, stride, n, radius int, tmp []int32) {
	for i := 0; i < n; i++ {
		o := i * stride
		tmp[i*3], tmp[i*3+1], tmp[i*3+2] = int32(p[o]), int32(p[o+1]), int32(p[o+2])
	}
	at := func(i int) int {
		return min(max(i, 0), n-1) * 3
	}
	var s0, s1, s2 int32
	for i := -radius; i <= radius; i++ {
		j := at(i)
		s0, s1, s2 = s0+tmp[j], s1+tmp[j+1], s2+tmp[j+2]
	}
	d := newDivider(2*radius + 1)
	for i := 0; i < n; i++ {
		o := i * stride
		p[o], p[o+1], p[o+2] = d.div(s0), d.div(s1), d.div(s2)
		add, sub := at(i+radius+1), at(i-radius)
		s0 += tmp[add] - tmp[sub]
		s1 += tmp[add+1] - tmp[sub+1]
		s2 += tmp[add+2] - tmp[sub+2]
	}
}

// divider divides a window's sum by its size with a multiply and a shift
// (an integer division per channel was most of a whole-frame blur's time),
// giving exactly the quotient: sums are below 2^20 (255 times a window of
// at most 4095), and m = ceil(2^32/n) is exact for every dividend below
// 2^(32-ceil(log2 n)) >= 2^20.
type divider struct{ m uint64 }

func newDivider(n int) divider { return divider{m: ((1 << 32) + uint64(n) - 1) / uint64(n)} }

func (d divider) div(s int32) byte { return byte(uint64(s) * d.m >> 32) }

// enlarge grows r by margin times its size on each side.
func enlarge(r image.Rectangle, margin float64) image.Rectangle {
	dx := int(float64(r.Dx())*margin + 0.5)
	dy := int(float64(r.Dy())*margin + 0.5)
	return image.Rect(r.Min.X-dx, r.Min.Y-dy, r.Max.X+dx, r.Max.Y+dy)
}

func (m Mode) validate() error {
	switch m {
	case ModeBlur, ModeMosaic, ModeFill:
		return nil
	}
	return fmt.Errorf("unknown mode %q (want blur, mosaic or fill)", string(m))
}
