// Package encode turns obscured frames into H.264 (libx264 through
// libavcodec, in process, go-astiav) and H.264 into MP4 files (the MP4
// muxer of libavformat). It takes *blur.Frame only.
//
// An Encoder encodes a camera's frames once; its packets can go to any
// number of consumers (a recording's Muxer, live viewers). Each frame keeps
// its own timestamp as its presentation time: variable frame rate, so a
// file lasts the wall time its frames cover, whatever was dropped before
// them. A Writer is an Encoder and a Muxer for one file.
//
// A file is written under a hidden partial name beside its path and
// renamed when Close succeeds, so every visible file is complete and
// playable.
package encode

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/asticode/go-astiav"

	"github.com/veilproject/veil/blur"
)

// timeBase is the stream's clock: 90 kHz, as RTP video uses, so a
// timestamp off by a microsecond-rounding never collides with the next.
var timeBase = astiav.NewRational(1, 90000)

// DefaultPreset is the x264 preset of recordings and live view, chosen by
// measurement where the encoder competes with the detector for two cores:
// with three cameras, superfast answered far more frames than veryfast
// (the default until then), nearly as many as ultrafast, and keeps most
// of that gain for less extra disk than ultrafast (measured on a 2-core
// Intel Xeon: docs/benchmarks/figures-from-code-comments.md).
const DefaultPreset = "superfast"

// Options tune the encoder.
type Options struct {
	// Width and Height are the frames' size; a frame of another size is an
	// error (a new size needs a new encoder). An odd side loses its last
	// column or row (H.264 4:2:0 needs even sides).
	Width, Height int
	// Preset is libx264's preset. It defaults to DefaultPreset.
	Preset string
	// CRF is libx264's quality (lower is better). It defaults to 23.
	CRF int
	// KeyInterval is the longest time between keyframes. It defaults to 2s.
	KeyInterval time.Duration
}

// Packet is one encoded picture: H.264 NAL units in Annex-B form (start
// codes). The parameter sets are in the Encoder's Extradata, not in the
// packets.
type Packet struct {
	Data []byte
	// PTS is the frame's own timestamp (its stream time).
	PTS time.Duration
	Key bool
}

// Encoder encodes one camera's frames of one size. Not safe for
// concurrent use, except RequestKeyframe.
type Encoder struct {
	opts     Options
	cc       *astiav.CodecContext
	yuv      *astiav.Frame
	pkt      *astiav.Packet
	start    time.Duration // PTS of the first frame
	last     int64         // last pts encoded, in timeBase
	lastKey  int64
	frames   int
	forceKey atomic.Bool
	keyAt    atomic.Int64 // stream PTS from which the next frame is a keyframe
}

// NewEncoder opens libx264 for frames of opts' size. Its output carries
// the parameter sets out of band (Extradata), as MP4 wants them.
func NewEncoder(opts Options) (_ *Encoder, err error) {
	if opts.Width < 2 || opts.Height < 2 {
		return nil, fmt.Errorf("encode: frame size %dx%d", opts.Width, opts.Height)
	}
	ew, eh := opts.Width&^1, opts.Height&^1
	if opts.Preset == "" {
		opts.Preset = DefaultPreset
	}
	if opts.CRF == 0 {
		opts.CRF = 23
	}
	if opts.KeyInterval == 0 {
		opts.KeyInterval = 2 * time.Second
	}
	astiav.SetLogLevel(astiav.LogLevelQuiet)
	e := &Encoder{opts: opts, last: -1, lastKey: -1}
	e.keyAt.Store(math.MaxInt64)
	defer func() {
		if err != nil {
			e.Free()
		}
	}()
	codec := astiav.FindEncoderByName("libx264")
	if codec == nil {
		return nil, errors.New("encode: libavcodec has no libx264 encoder")
	}
	if e.cc = astiav.AllocCodecContext(codec); e.cc == nil {
		return nil, errors.New("encode: cannot allocate an encoder")
	}
	e.cc.SetWidth(ew)
	e.cc.SetHeight(eh)
	e.cc.SetPixelFormat(astiav.PixelFormatYuv420P)
	e.cc.SetTimeBase(timeBase)
	e.cc.SetThreadCount(1) // the detector needs the cores; one encoder thread per camera
	e.cc.SetFlags(e.cc.Flags().Add(astiav.CodecContextFlagGlobalHeader))
	d := astiav.NewDictionary()
	defer d.Free()
	d.Set("preset", opts.Preset, 0)
	d.Set("crf", strconv.Itoa(opts.CRF), 0)
	// zerolatency: no lookahead and no B-frames, so each frame's packet
	// comes out of Encode with it (live viewers see it at once; with the
	// preset's lookahead they would be 10 frames behind) and decode order
	// is presentation order. Keyframes are placed by time in Encode (and
	// on request); x264's own scene-cut ones stay.
	d.Set("tune", "zerolatency", 0)
	d.Set("x264-params", "keyint=infinite:min-keyint=1", 0)
	if err := e.cc.Open(codec, d); err != nil {
		return nil, fmt.Errorf("encode: opening libx264: %w", err)
	}
	e.yuv, e.pkt = astiav.AllocFrame(), astiav.AllocPacket()
	e.yuv.SetWidth(ew)
	e.yuv.SetHeight(eh)
	e.yuv.SetPixelFormat(astiav.PixelFormatYuv420P)
	if err := e.yuv.AllocBuffer(0); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return e, nil
}

// Size is the frame size the encoder takes.
func (e *Encoder) Size() (w, h int) { return e.opts.Width, e.opts.Height }

// Extradata is the stream's SPS and PPS, Annex-B (libx264's global header).
func (e *Encoder) Extradata() []byte { return append([]byte(nil), e.cc.ExtraData()...) }

// RequestKeyframe makes the next frame a keyframe (a new viewer, a
// viewer's picture-loss report, a segment boundary). Safe from any
// goroutine.
func (e *Encoder) RequestKeyframe() { e.forceKey.Store(true) }

// KeyframeAt makes the first frame at or after pts (stream time) a
// keyframe: where the recorder's next segment is to start.
func (e *Encoder) KeyframeAt(pts time.Duration) { e.keyAt.Store(int64(pts)) }

// planes is the frame's first three data planes: AVFrame starts with
// uint8_t *data[8] (FFmpeg's public, ABI-stable layout).
func planes(f *astiav.Frame) [3]unsafe.Pointer {
	data := (*[8]unsafe.Pointer)(f.UnsafePointer())
	return [3]unsafe.Pointer{data[0], data[1], data[2]}
}

// Encode encodes f at its timestamp and returns the packets that came out
// (with the settings here, f's own). A frame not after the previous one
// (a clock step back) is skipped, not reordered.
func (e *Encoder) Encode(f *blur.Frame) ([]Packet, error) {
	if e.cc == nil {
		return nil, errors.New("encode: encoder freed")
	}
	if !f.Valid() {
		return nil, errors.New("encode: frame was not made by blur; refusing it")
	}
	if f.Width() != e.opts.Width || f.Height() != e.opts.Height {
		return nil, fmt.Errorf("encode: frame %dx%d for a %dx%d encoder", f.Width(), f.Height(), e.opts.Width, e.opts.Height)
	}
	if e.frames == 0 {
		e.start = f.Meta().PTS
	}
	pts := int64((f.Meta().PTS - e.start) * 90 / time.Millisecond)
	if pts <= e.last {
		return nil, nil
	}
	// One frame is reused for every picture: libx264 copies each input
	// picture into its own buffers while encoding it, keeping no
	// reference to yuv.
	p, ls := planes(e.yuv), e.yuv.Linesize()
	if err := bgrToI420(f.Pix(), 3*e.opts.Width, p[0], p[1], p[2], ls[0], ls[1], ls[2], e.yuv.Width(), e.yuv.Height()); err != nil {
		return nil, err
	}
	e.yuv.SetPts(pts)
	at := int64(f.Meta().PTS) >= e.keyAt.Load()
	if at {
		e.keyAt.Store(math.MaxInt64)
	}
	key := e.forceKey.Swap(false) || at || e.lastKey < 0 || time.Duration(pts-e.lastKey)*time.Millisecond/90 >= e.opts.KeyInterval
	if key {
		e.yuv.SetPictureType(astiav.PictureTypeI)
		e.lastKey = pts
	} else {
		e.yuv.SetPictureType(astiav.PictureTypeNone)
	}
	e.last = pts
	e.frames++
	return e.send(e.yuv)
}

// Flush returns the packets still inside the encoder; it takes no frame
// afterwards.
func (e *Encoder) Flush() ([]Packet, error) {
	if e.cc == nil {
		return nil, nil
	}
	return e.send(nil)
}

// Frames is the number of frames encoded.
func (e *Encoder) Frames() int { return e.frames }

func (e *Encoder) send(frame *astiav.Frame) ([]Packet, error) {
	if err := e.cc.SendFrame(frame); err != nil {
		if frame == nil && errors.Is(err, astiav.ErrEof) {
			return nil, nil
		}
		return nil, fmt.Errorf("encode: %w", err)
	}
	var out []Packet
	for {
		if err := e.cc.ReceivePacket(e.pkt); err != nil {
			if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
				return out, nil
			}
			return out, fmt.Errorf("encode: %w", err)
		}
		out = append(out, Packet{Data: append([]byte(nil), e.pkt.Data()...),
			PTS: e.start + time.Duration(e.pkt.Pts())*time.Millisecond/90, Key: e.pkt.Flags().Has(astiav.PacketFlagKey)})
		e.pkt.Unref()
	}
}

// Free releases everything libav allocated for the encoder. Safe to call
// twice.
func (e *Encoder) Free() {
	if e.yuv != nil {
		e.yuv.Free()
		e.yuv = nil
	}
	if e.pkt != nil {
		e.pkt.Free()
		e.pkt = nil
	}
	if e.cc != nil {
		e.cc.Free()
		e.cc = nil
	}
}

// Muxer writes an Encoder's packets to one MP4 file. It must start with a
// keyframe.
type Muxer struct {
	path, tmp string
	fc        *astiav.FormatContext
	io        *astiav.IOContext
	st        *astiav.Stream
	pkt       *astiav.Packet
	start     time.Duration // PTS of the first packet
	last      time.Duration // PTS of the previous packet
	packets   int
	done      bool
	err       error
}

// CreateMuxer opens path (via its partial file) for the packets of enc.
func CreateMuxer(path string, enc *Encoder) (_ *Muxer, err error) {
	m := &Muxer{path: path, tmp: filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial"), start: -1}
	defer func() {
		if err != nil {
			m.free()
			os.Remove(m.tmp)
		}
	}()
	if enc == nil || enc.cc == nil {
		return nil, fmt.Errorf("output %s: no encoder", path)
	}
	if m.fc, err = astiav.AllocOutputFormatContext(nil, "mp4", m.tmp); err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	if m.st = m.fc.NewStream(nil); m.st == nil {
		return nil, errors.New("encode: cannot add a stream")
	}
	if err := m.st.CodecParameters().FromCodecContext(enc.cc); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	m.st.SetTimeBase(timeBase)
	if m.io, err = astiav.OpenIOContext(m.tmp, astiav.NewIOContextFlags(astiav.IOContextFlagWrite)); err != nil {
		return nil, fmt.Errorf("output %s: cannot write: %w", path, err)
	}
	m.fc.SetPb(m.io)
	if err := m.fc.WriteHeader(nil); err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	m.pkt = astiav.AllocPacket()
	return m, nil
}

// Write muxes p; its time in the file is its PTS since the file's first
// packet.
func (m *Muxer) Write(p Packet) error {
	if m.done {
		return fmt.Errorf("output %s: closed", m.path)
	}
	if m.start < 0 {
		if !p.Key {
			return fmt.Errorf("output %s: must start with a keyframe", m.path)
		}
		m.start = p.PTS
	}
	if err := m.pkt.FromData(p.Data); err != nil { // it copies into a buffer of its own
		return fmt.Errorf("output %s: %w", m.path, err)
	}
	ts := int64((p.PTS - m.start) * 90 / time.Millisecond)
	m.pkt.SetPts(ts)
	m.pkt.SetDts(ts)
	// The muxer times each picture by the next one's timestamp, except the
	// last, which it times by its own duration: without one the file's edit
	// list would end where the last picture starts, and players would never
	// show it. It is given the interval before it (a frame at 15 fps for
	// the first).
	d := time.Second / 15
	if m.packets > 0 && p.PTS > m.last {
		d = p.PTS - m.last
	}
	m.last = p.PTS
	m.pkt.SetDuration(int64(d * 90 / time.Millisecond))
	if p.Key {
		m.pkt.SetFlags(m.pkt.Flags().Add(astiav.PacketFlagKey))
	}
	m.pkt.SetStreamIndex(m.st.Index())
	m.pkt.RescaleTs(timeBase, m.st.TimeBase())
	err := m.fc.WriteInterleavedFrame(m.pkt)
	m.pkt.Unref()
	if err != nil {
		return fmt.Errorf("output %s: writing: %w", m.path, err)
	}
	m.packets++
	return nil
}

// Packets is the number of packets written.
func (m *Muxer) Packets() int { return m.packets }

// Close finishes the file and renames it into place. With ctx already
// ended, or nothing written, it abandons the file instead. Safe to call
// twice.
func (m *Muxer) Close(ctx context.Context) error {
	if m.done {
		return m.err
	}
	m.done = true
	if ctx.Err() != nil || m.packets == 0 {
		m.free()
		os.Remove(m.tmp)
		m.err = fmt.Errorf("output %s: abandoned", m.path)
		if m.packets == 0 {
			m.err = fmt.Errorf("output %s: no frame to write", m.path)
		}
		return m.err
	}
	err := m.fc.WriteTrailer()
	m.free()
	if err == nil {
		err = os.Rename(m.tmp, m.path)
	}
	if err != nil {
		os.Remove(m.tmp)
		m.err = fmt.Errorf("output %s: %w", m.path, err)
	}
	return m.err
}

func (m *Muxer) free() {
	if m.pkt != nil {
		m.pkt.Free()
		m.pkt = nil
	}
	if m.io != nil {
		m.io.Close()
		m.io = nil
	}
	if m.fc != nil {
		m.fc.Free()
		m.fc = nil
	}
}

// Writer is one MP4 file of frames: an Encoder and a Muxer of its own.
type Writer struct {
	enc *Encoder
	mux *Muxer
}

// Create opens path (via its partial file) for frames of opts' size.
func Create(path string, opts Options) (*Writer, error) {
	enc, err := NewEncoder(opts)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	mux, err := CreateMuxer(path, enc)
	if err != nil {
		enc.Free()
		return nil, err
	}
	return &Writer{enc: enc, mux: mux}, nil
}

// Write encodes f at its timestamp: its PTS since the file's first frame.
// A frame not after the previous one (a clock step back) is skipped.
func (w *Writer) Write(f *blur.Frame) error {
	if w.mux.done {
		return fmt.Errorf("output %s: closed", w.mux.path)
	}
	pkts, err := w.enc.Encode(f)
	if err != nil {
		return fmt.Errorf("output %s: %w", w.mux.path, err)
	}
	for _, p := range pkts {
		if err := w.mux.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// Frames is the number of frames written.
func (w *Writer) Frames() int { return w.enc.Frames() }

// Close flushes the encoder, finishes the file and renames it into place.
// With ctx already ended it abandons the file instead. Safe to call twice.
func (w *Writer) Close(ctx context.Context) error {
	if !w.mux.done && ctx.Err() == nil {
		pkts, err := w.enc.Flush()
		for _, p := range pkts {
			if err == nil {
				err = w.mux.Write(p)
			}
		}
		if err != nil {
			w.mux.Close(ended)
			w.enc.Free()
			w.mux.err = err
			return err
		}
	}
	err := w.mux.Close(ctx)
	w.enc.Free()
	return err
}

// ended is a context that has ended: closing with it abandons a file.
var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()
