// Package frame defines the decoded, un-obscured video frame that ingest
// produces and only the blur stage may consume.
//
// A *Raw holds camera pixels exactly as decoded: faces included. It must never
// reach a sink, the counter, a file or the network. The blur stage takes
// ownership of it (see blur.Stage.Obscure), after which its pixels are gone.
// Everything downstream of blur works on blur.Frame, a different type that
// only the blur package can make.
package frame

import (
	"fmt"
	"sync"
	"time"
)

// Meta is what is known about a frame apart from its pixels. It carries no
// image data and may be passed anywhere.
type Meta struct {
	// Camera is the configured id of the source.
	Camera string
	// Seq numbers frames of one source from 0, in decode order.
	Seq uint64
	// PTS is the presentation time relative to the start of the source.
	PTS time.Duration
	// Captured is the wall-clock time the frame was decoded.
	Captured time.Time
}

// Raw is a decoded frame in packed BGR24 (3 bytes a pixel, rows of 3*Width
// bytes, no padding). It is un-obscured and belongs to blur alone.
type Raw struct {
	Meta
	Width, Height int
	// Pix is nil once the frame has been handed to blur.
	Pix []byte
}

// NewRaw allocates a black frame of the given size.
func NewRaw(meta Meta, width, height int) *Raw {
	return &Raw{Meta: meta, Width: width, Height: height, Pix: make([]byte, width*height*3)}
}

// Reuse returns a frame of the given size whose pixels are those of some
// earlier frame that was Released, or black: for a decoder that writes
// every byte. A live camera that is behind drops most of what it decodes
// (measured: docs/benchmarks/figures-from-code-comments.md); those
// frames' buffers come back here instead of to the garbage collector,
// which had let them (2.7 MB a frame at 720p) pile up as heap between
// collections. A pooled buffer still holds raw pixels, so it is only ever
// handed out inside a Raw: raw pixels stay with blur's input.
func Reuse(meta Meta, width, height int) *Raw {
	return &Raw{Meta: meta, Width: width, Height: height, Pix: Bytes(width * height * 3)}
}

// Bytes is a buffer of n bytes, one given back (Recycle) if there is one:
// it then holds some earlier raw picture, so it is for raw pixels only
// and must be written whole before it is read.
func Bytes(n int) []byte {
	if v, ok := pools.Load(n); ok {
		if b, _ := v.(*sync.Pool).Get().(*[]byte); b != nil {
			return *b
		}
	}
	return make([]byte, n)
}

// Release gives r's buffer back for Reuse. It is for frames nothing will
// read again (a queue dropped them); r has no pixels afterwards.
func (r *Raw) Release() {
	if r == nil || len(r.Pix) == 0 {
		return
	}
	b := r.Pix
	r.Pix = nil
	Recycle(b)
}

// Recycle gives a picture buffer that nothing will read again back for
// Reuse: a dropped raw frame's (Release), or an obscured frame's once every
// holder is done with it (blur.Frame.Done). The next decoder to Reuse it
// overwrites it with raw pixels, so only a buffer no reader still holds
// may come here.
func Recycle(b []byte) {
	if len(b) == 0 {
		return
	}
	v, ok := pools.Load(len(b))
	if !ok {
		poolsMu.Lock()
		if v, ok = pools.Load(len(b)); !ok && poolSizes < maxPoolSizes {
			v, ok = new(sync.Pool), true
			pools.Store(len(b), v)
			poolSizes++
		}
		poolsMu.Unlock()
	}
	if ok {
		v.(*sync.Pool).Put(&b)
	}
}

// pools holds released buffers by length, one sync.Pool per picture size
// (the collector frees what stays unused). Sizes are bounded: a camera
// that keeps changing its picture size does not grow the map; frames of
// sizes past the bound go to the collector.
var (
	pools     sync.Map
	poolsMu   sync.Mutex
	poolSizes int
)

const maxPoolSizes = 32

// Validate reports whether the pixel buffer matches the stated size.
func (r *Raw) Validate() error {
	if r == nil {
		return fmt.Errorf("frame: nil frame")
	}
	if r.Width <= 0 || r.Height <= 0 {
		return fmt.Errorf("frame: camera %q seq %d: bad size %dx%d", r.Camera, r.Seq, r.Width, r.Height)
	}
	if len(r.Pix) != r.Width*r.Height*3 {
		return fmt.Errorf("frame: camera %q seq %d: %d bytes of pixels for %dx%d BGR24 (want %d)",
			r.Camera, r.Seq, len(r.Pix), r.Width, r.Height, r.Width*r.Height*3)
	}
	return nil
}
