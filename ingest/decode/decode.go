// Package decode turns compressed video (H.264 and H.265 access units, VP8
// and JPEG frames) into BGR24
// frames with FFmpeg's libavcodec through cgo (go-astiav, pinned to v0.16.0,
// the last release for Debian's FFmpeg 5.1), and libyuv for the colour
// conversion (yuv.go). It is the only cgo in ingest; in-process decoding
// costs about half the CPU of an ffmpeg child process.
package decode

import (
	"errors"
	"fmt"

	"github.com/asticode/go-astiav"
)

// Codec is a compressed video format.
type Codec int

// Codecs.
const (
	CodecH264 Codec = iota
	CodecVP8
	CodecH265
	CodecMJPEG
)

var codecs = [...]struct {
	name string
	id   astiav.CodecID
}{
	CodecH264:  {"H.264", astiav.CodecIDH264},
	CodecVP8:   {"VP8", astiav.CodecIDVp8},
	CodecH265:  {"H.265", astiav.CodecIDHevc},
	CodecMJPEG: {"MJPEG", astiav.CodecIDMjpeg},
}

func (c Codec) String() string {
	if int(c) < len(codecs) {
		return codecs[c].name
	}
	return fmt.Sprintf("codec(%d)", int(c))
}

// Decoder decodes one stream. Not safe for concurrent use; Close frees it.
type Decoder struct {
	cc       *astiav.CodecContext
	pkt      *astiav.Packet
	yuv, bgr *astiav.Frame
	sws      *astiav.SoftwareScaleContext
	sw, sh   int
	sf       astiav.PixelFormat
	max      int // pixels
	// swscaleOnly converts every format with swscale (tests: the
	// reference libyuv's output is compared with).
	swscaleOnly bool
}

// DefaultMaxPixels is the largest picture a decoder accepts by default:
// 4096x2160 (DCI 4K), beyond any camera an office has.
const DefaultMaxPixels = 4096 * 2160

// ErrTooLarge is returned for a picture above the decoder's limit.
var ErrTooLarge = errors.New("decode: picture larger than the limit")

// NewH264 opens an H.264 decoder with the default size limit.
func NewH264() (*Decoder, error) { return New(CodecH264, 0) }

// New opens a decoder for c that refuses pictures of more than maxPixels
// (0: DefaultMaxPixels). libavcodec checks the limit when it parses the
// stream's header, before it allocates the picture: a forged SPS or VP8
// keyframe that declares 16000x16000 costs nothing but an error.
func New(c Codec, maxPixels int) (*Decoder, error) {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	astiav.SetLogLevel(astiav.LogLevelQuiet)
	if c < 0 || int(c) >= len(codecs) {
		return nil, fmt.Errorf("decode: unknown %s", c)
	}
	codec := astiav.FindDecoder(codecs[c].id)
	if codec == nil {
		return nil, fmt.Errorf("decode: libavcodec has no %s decoder", c)
	}
	cc := astiav.AllocCodecContext(codec)
	if cc == nil {
		return nil, errors.New("decode: cannot allocate codec context")
	}
	cc.SetFlags(astiav.NewCodecContextFlags(astiav.CodecContextFlagLowDelay))
	opts := astiav.NewDictionary()
	defer opts.Free()
	opts.Set("max_pixels", fmt.Sprint(maxPixels), 0)
	if err := cc.Open(codec, opts); err != nil {
		cc.Free()
		return nil, fmt.Errorf("decode: opening %s decoder: %w", c, err)
	}
	return &Decoder{cc: cc, max: maxPixels, pkt: astiav.AllocPacket(), yuv: astiav.AllocFrame(), bgr: astiav.AllocFrame()}, nil
}

// Decode feeds one access unit (H.264 or H.265 in Annex-B form) or frame
// (VP8, JPEG). When a picture comes out, it asks into for a buffer of
// width*height*3 bytes and writes the packed BGR24 picture there: the
// only copy of the picture outside libav, straight into the frame that
// carries it (a copy through a temporary slice had doubled the
// allocation and copying per decoded frame). into may return nil to skip
// the conversion. ok is false when the decoder needs more data or into
// returned nil. Corrupt input returns an error and the decoder stays
// usable.
func (d *Decoder) Decode(annexB []byte, into func(width, height int) []byte) (ok bool, err error) {
	if err := d.pkt.FromData(annexB); err != nil {
		return false, err
	}
	err = d.cc.SendPacket(d.pkt)
	d.pkt.Unref()
	if err != nil && !errors.Is(err, astiav.ErrEagain) {
		return false, fmt.Errorf("decode: %w", err)
	}
	if err := d.cc.ReceiveFrame(d.yuv); err != nil {
		if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
			return false, nil
		}
		return false, fmt.Errorf("decode: %w", err)
	}
	defer d.yuv.Unref()
	w, h, pf := d.yuv.Width(), d.yuv.Height(), d.yuv.PixelFormat()
	if w <= 0 || h <= 0 {
		return false, fmt.Errorf("decode: picture of size %dx%d", w, h)
	}
	if w*h > d.max {
		return false, fmt.Errorf("%w: %dx%d", ErrTooLarge, w, h)
	}
	buf := into(w, h)
	if buf == nil {
		return false, nil
	}
	if len(buf) != w*h*3 {
		return false, fmt.Errorf("decode: a buffer of %d bytes for %dx%d BGR", len(buf), w, h)
	}
	// 4:2:0 in 8 bits (what H.264 and H.265 Main cameras send) goes
	// through libyuv, which is faster than swscale (measured:
	// docs/benchmarks/figures-from-code-comments.md) and needs neither
	// swscale's own frame nor the copy out of it. Other formats (4:2:2
	// JPEG, 10-bit H.265) keep swscale.
	if libyuvFormat(pf) && !d.swscaleOnly {
		if err := i420ToBGR(d.yuv, buf); err != nil {
			return false, err
		}
		return true, nil
	}
	if d.sws == nil || w != d.sw || h != d.sh || pf != d.sf {
		if d.sws != nil {
			d.sws.Free()
		}
		d.bgr.Unref()
		sws, err := astiav.CreateSoftwareScaleContext(w, h, pf, w, h, astiav.PixelFormatBgr24,
			astiav.NewSoftwareScaleContextFlags(astiav.SoftwareScaleContextFlagBilinear))
		if err != nil {
			d.sws = nil
			return false, fmt.Errorf("decode: scaler: %w", err)
		}
		d.sws, d.sw, d.sh, d.sf = sws, w, h, pf
	}
	if err := d.sws.ScaleFrame(d.yuv, d.bgr); err != nil {
		return false, fmt.Errorf("decode: scaling: %w", err)
	}
	if n, err := d.bgr.ImageCopyToBuffer(buf, 1); err != nil || n != len(buf) {
		return false, fmt.Errorf("decode: copying %dx%d BGR out (%d bytes): %v", w, h, n, err)
	}
	return true, nil
}

// Close frees the decoder. Safe to call twice.
func (d *Decoder) Close() {
	if d.cc == nil {
		return
	}
	if d.sws != nil {
		d.sws.Free()
	}
	d.bgr.Free()
	d.yuv.Free()
	d.pkt.Free()
	d.cc.Free()
	d.cc = nil
}
