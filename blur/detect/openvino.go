package detect

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "openvino_shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/veilproject/veil/blur"
)

// openvinoLib is OpenVINO's C library inside the wheel of OpenVINOVersion.
const openvinoLib = "libopenvino_c.so.2641"

// ovOnce holds the library and the one ov::Core of the process. The core
// is never freed: destroying the last core unloads the CPU plugin while its
// thread pool's thread-local state still points into it, which corrupts
// the process later (seen here as crashes in unrelated Go code). Models,
// compiled models and requests are per detector and are freed with it.
var ovOnce struct {
	sync.Once
	core unsafe.Pointer
	err  error
}

// loadOpenVINO opens OpenVINO's C library from dir and creates the core,
// once per process.
func loadOpenVINO(dir string) (unsafe.Pointer, error) {
	ovOnce.Do(func() {
		path := filepath.Join(dir, openvinoLib)
		if _, err := os.Stat(path); err != nil {
			ovOnce.err = fmt.Errorf("openvino runtime %s: not found (run `make runtimes`, or scripts/fetch-runtimes.sh, to fetch it)", path)
			return
		}
		cpath := C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
		if msg := C.veil_ov_open(cpath); msg != nil {
			ovOnce.err = fmt.Errorf("openvino runtime %s: %s", path, C.GoString(msg))
			return
		}
		if st := C.veil_ov_core_create(&ovOnce.core); st != 0 {
			ovOnce.err = ovErr("core", st)
		}
	})
	return ovOnce.core, ovOnce.err
}

func ovErr(op string, st C.ov_status) error {
	return fmt.Errorf("openvino: %s: status %d: %s", op, int(st), C.GoString(C.veil_ov_err()))
}

// OpenVINONet runs CenterFace on OpenVINO's CPU plugin. It is
// handed the picture's BGR bytes, which the compiled network itself turns
// into the input OpenCV's DNN gets from blobFromImage (RGB floats,
// resized bilinearly to multiples of 32), so both runtimes find the same
// faces (the recall test runs both). One detector serves cameras of
// several sizes: it keeps a compiled network per picture size (at most
// maxNets, the least recently used idle one freed first): the whole frame
// and the five crop sides of region search fit.
//
// With lanes > 1 each network is compiled with that many streams and an
// inference request per lane, and Lanes returns one Detector per lane;
// the lanes may run at the same time, each on its share of the threads.
// A lane's Detect is not itself safe for concurrent use.
type OpenVINONet struct {
	core      unsafe.Pointer
	model     []byte // the ONNX file's bytes
	threshold float32
	scale     float64
	precision string // asked for; "" lets OpenVINO choose; int8: the model is quantized
	threads   int
	lanes     []*ovLane
	// largePerLane compiles large inputs like small ones, a stream and a
	// request per lane (detect.Config.LargePerLane).
	largePerLane bool
	// compileHook, if set, runs before each network is compiled (tests:
	// one that holds a compile back).
	compileHook func(image.Point)
	// The network: its name, its input size for pictures of a size, and
	// how its outputs become boxes (CenterFace's, unless NewOpenVINOPeople
	// set them).
	name     string
	inputFor func(src image.Point) image.Point
	decode   func(l *ovLane, req unsafe.Pointer, n *ovNet, img blur.Image) ([]blur.Detection, error)

	mu   sync.Mutex // guards nets and tick
	nets map[image.Point]*ovNet
	tick uint64
}

// ovNet is the network compiled for one input size.
type ovNet struct {
	compiled unsafe.Pointer
	in       image.Point      // its input size; pictures are resized to it
	reqs     []unsafe.Pointer // one inference request per lane, or one that lanes share
	turn     sync.Mutex       // held by the lane using a shared request
	running  string           // the precision it runs in
	margin   float32
	used     uint64
	busy     int           // lanes inferring on it (or waiting for it): it is not freed while any is
	ready    chan struct{} // closed once compiled, or failed (err)
	err      error
}

// ovLane is one lane: its own inference requests (one per network) and
// output staging.
type ovLane struct {
	c   *OpenVINONet
	i   int
	out []float32 // output staging, reused
	// An inference runs asynchronously on OpenVINO's threads and ends by
	// signalling ev (an eventfd, through sig), which the lane waits on in
	// Go's poller. Waiting inside a native call instead (the synchronous
	// ov_infer_request_infer) parked a Go thread holding a P for every
	// inference, and Go's monitor thread then kept waking to take the P
	// back, at a high rate of context switches (measured:
	// docs/benchmarks/figures-from-code-comments.md).
	ev  *os.File
	sig *C.ov_callback_t
}

const maxNets = 8

// maxStreamedPixels is the largest input compiled with a stream and a
// request per lane: region search's common crops (up to 448x448). A
// larger input (a 640-px crop, a whole frame) is rare, a few per camera a
// second at most, and its memory is not: with a stream and a request per
// lane such a network holds more than with one stream and one request,
// which the lanes take turns on (measured:
// docs/benchmarks/figures-from-code-comments.md).
const maxStreamedPixels = 448 * 448

// OpenVINOOptions say how a network runs on OpenVINO.
type OpenVINOOptions struct {
	// LibDir holds OpenVINO's libraries (detectconf.Config.LibDir).
	LibDir string
	// Threshold is the lowest score returned; Scale resizes pictures
	// before inference (1: as they are).
	Threshold float32
	Scale     float64
	// Precision is f32, bf16, int8 (the model is then the int8 model,
	// ReadInt8Model), or "" for OpenVINO's choice on this CPU.
	Precision string
	// Threads bounds inference threads in all (0: one per core); Lanes is
	// how many inferences may run at once (at least 1).
	Threads, Lanes int
}

// NewOpenVINOCenterFace loads the runtime and CenterFace (its bytes,
// checked by ReadModel; every network is compiled from them, never from
// the file again).
func NewOpenVINOCenterFace(model []byte, opt OpenVINOOptions) (*OpenVINONet, error) {
	libDir, threshold, scale, precision, threads, lanes := opt.LibDir, opt.Threshold, opt.Scale, opt.Precision, opt.Threads, opt.Lanes
	core, err := loadOpenVINO(libDir)
	if err != nil {
		return nil, err
	}
	if len(model) == 0 {
		return nil, errors.New("openvino: empty model")
	}
	c := &OpenVINONet{core: core, model: model, nets: map[image.Point]*ovNet{}, threshold: threshold, scale: scale, precision: precision, threads: threads,
		name: KindCenterFace + "/openvino", decode: decodeCenterFace}
	c.inputFor = func(src image.Point) image.Point { return netInput(src, c.scale) }
	// Parsed once here so that a bad model fails now, not at the first frame.
	var m unsafe.Pointer
	if st := C.veil_ov_read_model(c.core, (*C.char)(unsafe.Pointer(&model[0])), C.size_t(len(model)), &m); st != 0 {
		return nil, ovErr("reading the model", st)
	}
	C.veil_ov_model_free(m)
	for i := range max(1, lanes) {
		l := &ovLane{c: c, i: i}
		c.lanes = append(c.lanes, l)
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("openvino: lane %d: eventfd: %w", i, err)
		}
		l.ev = os.NewFile(uintptr(fd), fmt.Sprintf("openvino lane %d", i))
		if l.sig = C.veil_ov_signal_new(C.int(fd)); l.sig == nil {
			c.Close()
			return nil, errors.New("openvino: out of memory")
		}
	}
	return c, nil
}

// Name implements blur.Detector.
func (c *OpenVINONet) Name() string { return c.name }

// Lanes returns a Detector per lane. The first is c's own (c.Detect).
func (c *OpenVINONet) Lanes() []blur.Detector {
	out := make([]blur.Detector, len(c.lanes))
	for i, l := range c.lanes {
		out[i] = l
	}
	return out
}

// Close frees everything the runtime allocated for this detector. Safe
// to call twice; no lane may be detecting.
func (c *OpenVINONet) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for in, n := range c.nets {
		n.free()
		delete(c.nets, in)
	}
	// After the requests: none can signal a lane any more.
	for _, l := range c.lanes {
		if l.ev != nil {
			l.ev.Close()
			l.ev = nil
		}
		if l.sig != nil {
			C.free(unsafe.Pointer(l.sig))
			l.sig = nil
		}
	}
	return nil
}

func (n *ovNet) free() {
	for i, r := range n.reqs {
		if r != nil {
			C.veil_ov_request_free(r)
		}
		n.reqs[i] = nil
	}
	if n.compiled != nil {
		C.veil_ov_compiled_free(n.compiled)
	}
	n.compiled = nil
}

// acquire returns the network for pictures of size src, compiled on first
// use, marked busy until release. A network is compiled outside the
// detector's lock, as a compile takes a while, longer on a busy CPU
// (measured: docs/benchmarks/figures-from-code-comments.md): with the
// lock held, one camera's first crop of a new size stalled every lane,
// and so every camera, for that long.
func (c *OpenVINONet) acquire(src image.Point) (*ovNet, error) {
	c.mu.Lock()
	c.tick++
	if n := c.nets[src]; n != nil {
		n.used = c.tick
		n.busy++
		c.mu.Unlock()
		<-n.ready
		if n.err != nil {
			c.release(n)
			return nil, n.err
		}
		return n, nil
	}
	if len(c.nets) >= maxNets {
		var oldest image.Point
		var victim *ovNet
		for p, n := range c.nets {
			if n.busy == 0 && (victim == nil || n.used < victim.used) {
				oldest, victim = p, n
			}
		}
		if victim != nil {
			victim.free()
			delete(c.nets, oldest)
		}
	}
	// Busy from the start: a network being compiled is never evicted.
	n := &ovNet{used: c.tick, in: c.inputFor(src), busy: 1, ready: make(chan struct{})}
	c.nets[src] = n
	c.mu.Unlock()
	if err := c.compile(n, src); err != nil {
		c.mu.Lock()
		n.err = err
		n.busy--
		if c.nets[src] == n {
			delete(c.nets, src) // the next picture of this size tries again
		}
		c.mu.Unlock()
		close(n.ready)
		return nil, err
	}
	close(n.ready)
	return n, nil
}

// compile compiles n for pictures of size src, with its requests, and
// reads the precision it runs in.
func (c *OpenVINONet) compile(n *ovNet, src image.Point) error {
	if c.compileHook != nil {
		c.compileHook(src)
	}
	// A large network has one stream on every thread and one request:
	// lanes that meet on it take turns. (On one lane's share of the
	// threads a 720p sweep costs less CPU than on two, but at eight
	// cameras the lanes then queued for it and fewer frames were
	// answered; measured: docs/benchmarks/figures-from-code-comments.md.)
	in := n.in
	nstreams, nreqs := len(c.lanes), len(c.lanes)
	if in.X*in.Y > maxStreamedPixels && !c.largePerLane {
		nstreams, nreqs = 1, 1
	}
	cthreads := C.CString(strconv.Itoa(c.threads))
	defer C.free(unsafe.Pointer(cthreads))
	streams := C.CString(strconv.Itoa(nstreams))
	defer C.free(unsafe.Pointer(streams))
	hint := c.precision
	if hint == "int8" {
		hint = "f32" // for the layers the quantized model keeps in floats
	}
	prec := C.CString(hint)
	defer C.free(unsafe.Pointer(prec))
	n.reqs = make([]unsafe.Pointer, nreqs)
	if st := C.veil_ov_compile(c.core, (*C.char)(unsafe.Pointer(&c.model[0])), C.size_t(len(c.model)), C.int64_t(in.Y), C.int64_t(in.X), C.int64_t(src.Y), C.int64_t(src.X), cthreads, streams, prec, &n.compiled); st != 0 {
		return ovErr(fmt.Sprintf("compiling for %dx%d", in.X, in.Y), st)
	}
	for i := range n.reqs {
		if st := C.veil_ov_request(n.compiled, &n.reqs[i]); st != 0 {
			err := ovErr("infer request", st)
			n.free()
			return err
		}
	}
	var buf [16]C.char
	if st := C.veil_ov_precision(n.compiled, &buf[0], C.size_t(len(buf))); st != 0 {
		err := ovErr("precision", st)
		n.free()
		return err
	}
	n.running = C.GoString(&buf[0])
	switch {
	case c.precision == "int8":
		n.running, n.margin = "int8", Int8Margin
	case n.running == "bf16" || n.running == "f16":
		n.margin = ReducedPrecisionMargin
	}
	return nil
}

// Prepare compiles, now, the networks for pictures of these sizes, so
// that the first crop of each size does not wait for its compile. Under
// load a compile is slow, and one camera's first crop of a new size,
// often after the capacity benchmark's warm-up, dropped frames waiting
// for it, so that even a single 720p15 camera did not answer all its
// frames (measured on the 2-core Xeon:
// docs/benchmarks/figures-from-code-comments.md). It stops between sizes
// when ctx ends.
func (c *OpenVINONet) Prepare(ctx context.Context, sizes []image.Point) error {
	for _, p := range sizes {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := c.acquire(p)
		if err != nil {
			return err
		}
		c.release(n)
	}
	return nil
}

func (c *OpenVINONet) release(n *ovNet) {
	c.mu.Lock()
	n.busy--
	c.mu.Unlock()
}

// ReducedPrecisionMargin lowers the score threshold when the network runs
// in bf16 (or f16): their heatmaps differ from f32's by up to about this
// much (measured on the labelled photos and a 720p clip), so a face f32
// scores just at the threshold would otherwise be lost. With it, bf16
// found every face f32 found on both, where without it bf16 missed one on
// the clip (figures: docs/benchmarks/figures-from-code-comments.md):
// speed is not bought with recall.
const ReducedPrecisionMargin = 0.02

// Precision is what the most recently used network runs in ("f32",
// "bf16", "int8"), empty before the first frame.
func (c *OpenVINONet) Precision() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nets {
		select {
		case <-n.ready: // compiled: running is set
		default:
			continue
		}
		if n.used == c.tick {
			return n.running
		}
	}
	return ""
}

// Detect implements blur.Detector, on the first lane.
func (c *OpenVINONet) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	return c.lanes[0].Detect(ctx, img)
}

// Name implements blur.Detector.
func (l *ovLane) Name() string { return l.c.Name() }

// Detect implements blur.Detector.
func (l *ovLane) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	c := l.c
	if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height*3 {
		return nil, fmt.Errorf("%s: bad image buffer", c.name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	src := image.Pt(img.Width, img.Height)
	n, err := c.acquire(src)
	if err != nil {
		return nil, err
	}
	defer c.release(n)
	req := n.reqs[0]
	if len(n.reqs) == 1 { // shared (or one lane: the lock is then uncontended)
		n.turn.Lock()
		defer n.turn.Unlock()
	} else {
		req = n.reqs[l.i]
	}
	if err := l.infer(req, img); err != nil {
		return nil, err
	}
	dets, err := c.decode(l, req, n, img)
	if err != nil {
		return nil, err
	}
	return dets, ctx.Err()
}

// output copies req's float32 output called name into buf and returns its
// dims.
func (l *ovLane) output(req unsafe.Pointer, name string, buf []float32) ([4]int64, error) {
	var dims [4]C.int64_t
	cname := C.CString(name)
	st := C.veil_ov_output(req, cname, (*C.float)(unsafe.Pointer(&buf[0])), C.int64_t(len(buf)), &dims[0])
	C.free(unsafe.Pointer(cname))
	if st != 0 {
		return [4]int64{}, ovErr("output "+name, st)
	}
	return [4]int64{int64(dims[0]), int64(dims[1]), int64(dims[2]), int64(dims[3])}, nil
}

// staging returns the lane's output buffer, grown to n values.
func (l *ovLane) staging(n int) []float32 {
	if cap(l.out) < n {
		l.out = make([]float32, n)
	}
	return l.out[:n]
}

// decodeCenterFace reads CenterFace's three maps and turns them into faces
// in img's pixels.
func decodeCenterFace(l *ovLane, req unsafe.Pointer, n *ovNet, img blur.Image) ([]blur.Detection, error) {
	c := l.c
	inW, inH := n.in.X, n.in.Y
	gh, gw := inH/4, inW/4
	out := l.staging(5 * gh * gw)
	heat, scale, offset := out[:gh*gw], out[gh*gw:3*gh*gw], out[3*gh*gw:]
	for _, o := range []struct {
		name string
		buf  []float32
		ch   int
	}{{centerFaceOutputs[0], heat, 1}, {centerFaceOutputs[1], scale, 2}, {centerFaceOutputs[2], offset, 2}} {
		dims, err := l.output(req, o.name, o.buf)
		if err != nil {
			return nil, err
		}
		if dims != [4]int64{1, int64(o.ch), int64(gh), int64(gw)} {
			return nil, fmt.Errorf("centerface: output %s has shape %v, want [1 %d %d %d]", o.name, dims, o.ch, gh, gw)
		}
	}
	dets := decodeMaps(heat, scale, offset, gh, gw, c.threshold-n.margin, inW, inH)
	return toFrame(dets, inW, inH, img.Width, img.Height), nil
}

// infer runs req on img and returns once the inference has ended, with or
// without an error: OpenVINO reads img's pixels (pinned meanwhile) until
// then.
func (l *ovLane) infer(req unsafe.Pointer, img blur.Image) error {
	if l.ev == nil {
		return errors.New("openvino: detector closed")
	}
	var pin runtime.Pinner
	pin.Pin(&img.Pix[0])
	defer pin.Unpin()
	var tensor unsafe.Pointer
	if st := C.veil_ov_start(req, (*C.uint8_t)(unsafe.Pointer(&img.Pix[0])), C.int64_t(img.Height), C.int64_t(img.Width), l.sig, &tensor); st != 0 {
		return ovErr("infer", st)
	}
	var b [8]byte
	_, werr := io.ReadFull(l.ev, b[:])
	// Even if the wait failed, finish waits in OpenVINO itself: the
	// picture is not given back while an inference may still read it.
	if st := C.veil_ov_finish(req, tensor); st != 0 {
		return ovErr("infer", st)
	}
	if werr != nil {
		return fmt.Errorf("openvino: waiting for an inference: %w", werr)
	}
	return nil
}

var (
	_ blur.Detector = (*OpenVINONet)(nil)
	_ blur.Detector = (*ovLane)(nil)
)
