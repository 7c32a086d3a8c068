// Package encode writes obscured frames to an H.264 MP4 file in process
// (libx264 and the MP4 muxer through libavcodec/libavformat, go-astiav),
// with each frame's own timestamp as its presentation time: variable frame
// rate, so a file lasts the wall time its frames cover, whatever was
// dropped before them. It takes *blur.Frame only.
//
// The file is written under a hidden partial name beside path and renamed
// when Close succeeds, so every visible file is complete and playable.
package encode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"

	"github.com/asticode/go-astiav"

	"github.com/veilproject/veil/blur"
)

// timeBase is the stream's clock: 90 kHz, as RTP video uses, so a
// timestamp off by a microsecond-rounding never collides with the next.
var timeBase = astiav.NewRational(1, 90000)

// Options tune the encoder.
type Options struct {
	// Width and Height are the frames' size; a frame of another size is an
	// error (the recorder starts a new file on a size change). An odd side
	// loses its last column or row (H.264 4:2:0 needs even sides).
	Width, Height int
	// Preset is libx264's preset. It defaults to veryfast.
	Preset string
	// CRF is libx264's quality (lower is better). It defaults to 23.
	CRF int
	// KeyInterval is the longest time between keyframes. It defaults to 2s.
	KeyInterval time.Duration
}

// Writer is one MP4 file being written.
type Writer struct {
	path, tmp string
	opts      Options
	fc        *astiav.FormatContext
	io        *astiav.IOContext
	st        *astiav.Stream
	cc        *astiav.CodecContext
	sws       *astiav.SoftwareScaleContext
	bgr, yuv  *astiav.Frame
	pkt       *astiav.Packet
	start     time.Duration // PTS of the first frame
	last      int64         // last pts written, in timeBase
	lastKey   int64
	frames    int
	done      bool
	err       error
}

// Create opens path (via its partial file) for frames of opts' size.
func Create(path string, opts Options) (_ *Writer, err error) {
	if opts.Width < 2 || opts.Height < 2 {
		return nil, fmt.Errorf("output %s: frame size %dx%d", path, opts.Width, opts.Height)
	}
	ew, eh := opts.Width&^1, opts.Height&^1
	if opts.Preset == "" {
		opts.Preset = "veryfast"
	}
	if opts.CRF == 0 {
		opts.CRF = 23
	}
	if opts.KeyInterval == 0 {
		opts.KeyInterval = 2 * time.Second
	}
	astiav.SetLogLevel(astiav.LogLevelQuiet)
	w := &Writer{path: path, tmp: filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial"), opts: opts, last: -1, lastKey: -1}
	defer func() {
		if err != nil {
			w.free()
			os.Remove(w.tmp)
		}
	}()
	codec := astiav.FindEncoderByName("libx264")
	if codec == nil {
		return nil, errors.New("encode: libavcodec has no libx264 encoder")
	}
	if w.cc = astiav.AllocCodecContext(codec); w.cc == nil {
		return nil, errors.New("encode: cannot allocate an encoder")
	}
	w.cc.SetWidth(ew)
	w.cc.SetHeight(eh)
	w.cc.SetPixelFormat(astiav.PixelFormatYuv420P)
	w.cc.SetTimeBase(timeBase)
	w.cc.SetThreadCount(1) // the detector needs the cores; one encoder thread per camera
	if w.fc, err = astiav.AllocOutputFormatContext(nil, "mp4", w.tmp); err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	if w.fc.OutputFormat().Flags().Has(astiav.IOFormatFlagGlobalheader) {
		w.cc.SetFlags(w.cc.Flags().Add(astiav.CodecContextFlagGlobalHeader))
	}
	d := astiav.NewDictionary()
	defer d.Free()
	d.Set("preset", opts.Preset, 0)
	d.Set("crf", strconv.Itoa(opts.CRF), 0)
	// Keyframes are placed by time in Write; x264's own scene-cut ones stay.
	d.Set("x264-params", "keyint=infinite:min-keyint=1", 0)
	if err := w.cc.Open(codec, d); err != nil {
		return nil, fmt.Errorf("encode: opening libx264: %w", err)
	}
	if w.st = w.fc.NewStream(nil); w.st == nil {
		return nil, errors.New("encode: cannot add a stream")
	}
	if err := w.st.CodecParameters().FromCodecContext(w.cc); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	w.st.SetTimeBase(timeBase)
	if w.io, err = astiav.OpenIOContext(w.tmp, astiav.NewIOContextFlags(astiav.IOContextFlagWrite)); err != nil {
		return nil, fmt.Errorf("output %s: cannot write: %w", path, err)
	}
	w.fc.SetPb(w.io)
	if err := w.fc.WriteHeader(nil); err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	w.bgr, w.yuv, w.pkt = astiav.AllocFrame(), astiav.AllocFrame(), astiav.AllocPacket()
	w.bgr.SetWidth(ew)
	w.bgr.SetHeight(eh)
	w.bgr.SetPixelFormat(astiav.PixelFormatBgr24)
	if err := w.bgr.AllocBuffer(0); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	w.yuv.SetWidth(ew)
	w.yuv.SetHeight(eh)
	w.yuv.SetPixelFormat(astiav.PixelFormatYuv420P)
	if err := w.yuv.AllocBuffer(0); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if w.sws, err = astiav.CreateSoftwareScaleContext(ew, eh, astiav.PixelFormatBgr24, ew, eh,
		astiav.PixelFormatYuv420P, astiav.NewSoftwareScaleContextFlags(astiav.SoftwareScaleContextFlagBilinear)); err != nil {
		return nil, fmt.Errorf("encode: scaler: %w", err)
	}
	return w, nil
}

// plane0 is the frame's first data plane, writable: AVFrame starts with
// uint8_t *data[8] (FFmpeg's public, ABI-stable layout).
func plane0(f *astiav.Frame) []byte {
	data := (*[8]unsafe.Pointer)(f.UnsafePointer())
	return unsafe.Slice((*byte)(data[0]), f.Linesize()[0]*f.Height())
}

// Write encodes f at its timestamp: its PTS since the file's first frame.
// A frame not after the previous one (a clock step back) is skipped, not
// reordered.
func (w *Writer) Write(f *blur.Frame) error {
	if w.done {
		return fmt.Errorf("output %s: closed", w.path)
	}
	if !f.Valid() {
		return errors.New("encode: frame was not made by blur; refusing it")
	}
	if f.Width() != w.opts.Width || f.Height() != w.opts.Height {
		return fmt.Errorf("output %s: frame %dx%d in a %dx%d file", w.path, f.Width(), f.Height(), w.opts.Width, w.opts.Height)
	}
	if w.frames == 0 {
		w.start = f.Meta().PTS
	}
	pts := int64((f.Meta().PTS - w.start) * 90 / time.Millisecond)
	if pts <= w.last {
		return nil
	}
	// The two frames are reused for every picture: only swscale reads bgr,
	// and libx264 copies each input picture into its own buffers while
	// encoding it, keeping no reference to yuv.
	dst, stride, src := plane0(w.bgr), w.bgr.Linesize()[0], f.Pix()
	row, srcRow := 3*w.bgr.Width(), 3*w.opts.Width
	for y := 0; y < w.bgr.Height(); y++ {
		copy(dst[y*stride:y*stride+row], src[y*srcRow:y*srcRow+row])
	}
	if err := w.sws.ScaleFrame(w.bgr, w.yuv); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	w.yuv.SetPts(pts)
	key := w.lastKey < 0 || time.Duration(pts-w.lastKey)*time.Millisecond/90 >= w.opts.KeyInterval
	if key {
		w.yuv.SetPictureType(astiav.PictureTypeI)
		w.lastKey = pts
	} else {
		w.yuv.SetPictureType(astiav.PictureTypeNone)
	}
	w.last = pts
	w.frames++
	return w.send(w.yuv)
}

// send encodes frame (nil flushes) and muxes what comes out.
func (w *Writer) send(frame *astiav.Frame) error {
	if err := w.cc.SendFrame(frame); err != nil {
		return fmt.Errorf("output %s: encoding: %w", w.path, err)
	}
	for {
		if err := w.cc.ReceivePacket(w.pkt); err != nil {
			if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
				return nil
			}
			return fmt.Errorf("output %s: encoding: %w", w.path, err)
		}
		w.pkt.SetStreamIndex(w.st.Index())
		w.pkt.RescaleTs(w.cc.TimeBase(), w.st.TimeBase())
		err := w.fc.WriteInterleavedFrame(w.pkt)
		w.pkt.Unref()
		if err != nil {
			return fmt.Errorf("output %s: writing: %w", w.path, err)
		}
	}
}

// Frames is the number of frames written.
func (w *Writer) Frames() int { return w.frames }

// Close flushes the encoder, finishes the file and renames it into place.
// With ctx already ended it abandons the file instead. Safe to call twice.
func (w *Writer) Close(ctx context.Context) error {
	if w.done {
		return w.err
	}
	w.done = true
	if ctx.Err() != nil || w.frames == 0 {
		w.free()
		os.Remove(w.tmp)
		w.err = fmt.Errorf("output %s: abandoned", w.path)
		if w.frames == 0 {
			w.err = fmt.Errorf("output %s: no frame to write", w.path)
		}
		return w.err
	}
	err := w.send(nil)
	if err == nil {
		err = w.fc.WriteTrailer()
	}
	w.free()
	if err == nil {
		err = os.Rename(w.tmp, w.path)
	}
	if err != nil {
		os.Remove(w.tmp)
		w.err = fmt.Errorf("output %s: %w", w.path, err)
	}
	return w.err
}

// free releases everything libav allocated for the file.
func (w *Writer) free() {
	if w.sws != nil {
		w.sws.Free()
		w.sws = nil
	}
	for _, f := range []**astiav.Frame{&w.bgr, &w.yuv} {
		if *f != nil {
			(*f).Free()
			*f = nil
		}
	}
	if w.pkt != nil {
		w.pkt.Free()
		w.pkt = nil
	}
	if w.cc != nil {
		w.cc.Free()
		w.cc = nil
	}
	if w.io != nil {
		w.io.Close()
		w.io = nil
	}
	if w.fc != nil {
		w.fc.Free()
		w.fc = nil
	}
}
