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
