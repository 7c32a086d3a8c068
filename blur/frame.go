package blur

import (
	"image"
	"sync/atomic"

	"github.com/veilproject/veil/frame"
)

// Frame is an obscured video frame: every face the detector found, every
// face it recently found, or, when it could not vouch for the frame, the
// whole picture, has been obscured irreversibly.
//
// Its fields are unexported so that no package but blur can make one with
// pixels in it: a sink or the counter that takes a *Frame can only ever be
// handed pixels that went through Stage.Obscure. The zero value holds no
// pixels and is rejected by every sink (see Valid).
type Frame struct {
	meta       frame.Meta
	width      int
	height     int
	pix        []byte
	faces      int
	detected   int
	failClosed string
	refs       atomic.Int32 // holders that have not called Done (Share)
}

// Share hands f to n holders (a camera's outputs and counter), each of
// which calls Done once, when it will not read f again. After the last
// Done, f holds no pixels and its buffer goes back to the decoders
// (frame.Recycle): without it every delivered frame was garbage, 2.7 MB
// at 720p, and with many cameras the collector let it pile up as heap
// between cycles (measured:
// docs/benchmarks/figures-from-code-comments.md). A frame never shared is
// left to the collector, and Done on it does nothing.
func (f *Frame) Share(n int) { f.refs.Store(int32(n)) }

// Done tells f that one of the holders it was shared with (Share) will
// not read it again.
func (f *Frame) Done() {
	if f.refs.Add(-1) == 0 {
		pix := f.pix
		f.pix = nil
		frame.Recycle(pix)
	}
}

// Meta is the frame's source, sequence number and timestamps.
func (f *Frame) Meta() frame.Meta { return f.meta }

// Width is the frame's width in pixels.
func (f *Frame) Width() int { return f.width }

// Height is the frame's height in pixels.
func (f *Frame) Height() int { return f.height }

// Bounds is the frame rectangle.
func (f *Frame) Bounds() image.Rectangle { return image.Rect(0, 0, f.width, f.height) }

// Pix is the obscured picture in packed BGR24. Callers may read it but
// must not keep it past the frame's use; writing to it cannot undo the
// obscuring, since the original pixels no longer exist.
func (f *Frame) Pix() []byte { return f.pix }

// Faces is the number of regions obscured in this frame (detections plus
// held-over boxes from recent frames). It is 0 for a fail-closed frame.
func (f *Frame) Faces() int { return f.faces }

// Detected is the number of faces the detector found in this frame (Faces
// also counts boxes held over from earlier frames).
func (f *Frame) Detected() int { return f.detected }

// FailClosed is the reason the whole frame was obscured ("" when the
// detector vouched for it): one of the Reason* constants.
func (f *Frame) FailClosed() string { return f.failClosed }

// Valid reports whether f holds a picture made by blur. Sinks call it to
// refuse zero values.
func (f *Frame) Valid() bool {
	return f != nil && f.width > 0 && f.height > 0 && len(f.pix) == f.width*f.height*3
}

// Image returns a copy of the picture as an RGBA image, for encoders that
// want image.Image.
func (f *Frame) Image() *image.RGBA {
	img := image.NewRGBA(f.Bounds())
	for i, j := 0, 0; i < len(f.pix); i, j = i+3, j+4 {
		img.Pix[j] = f.pix[i+2]
		img.Pix[j+1] = f.pix[i+1]
		img.Pix[j+2] = f.pix[i]
		img.Pix[j+3] = 255
	}
	return img
}
