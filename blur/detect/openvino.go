package detect

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

// The few OpenVINO C API (openvino/c/*.h, 2026.4) types and functions veil
// uses, declared here so that veil builds without OpenVINO's headers; the
// library is opened at run time from the wheel fetch-runtimes.sh unpacked.
typedef int ov_status;
typedef struct { int64_t rank; int64_t* dims; } ov_shape_t;
typedef struct { int64_t min; int64_t max; } ov_dimension_t;
typedef struct { ov_dimension_t rank; ov_dimension_t* dims; } ov_partial_shape_t;
enum { OV_F32 = 4, OV_U8 = 16 };

enum {
	S_core_create, S_core_free, S_core_read_model_mem, S_core_compile_model, S_model_free,
	S_model_reshape_single_input, S_partial_shape_create_static, S_partial_shape_free,
	S_compiled_model_create_infer_request, S_compiled_model_free, S_infer_request_set_input_tensor,
	S_infer_request_get_tensor, S_infer_request_free, S_tensor_create_from_host_ptr,
	S_tensor_data, S_tensor_get_shape, S_tensor_free, S_shape_create, S_shape_free,
	S_ppp_create, S_ppp_free, S_ppp_input, S_ppp_input_free, S_ppp_tensor_info, S_ppp_tensor_info_free,
	S_ppp_tensor_type, S_ppp_tensor_layout, S_ppp_tensor_spatial, S_ppp_steps, S_ppp_steps_free,
	S_ppp_convert_type, S_ppp_reverse_channels, S_ppp_resize, S_ppp_model_info,
	S_ppp_model_info_free, S_ppp_model_layout, S_ppp_build, S_layout_create, S_layout_free,
	S_infer_request_start_async, S_infer_request_wait, S_infer_request_set_callback, S_count
};
static void* ov_sym[S_count];
static const char* ov_names[] = {
	"ov_core_create", "ov_core_free", "ov_core_read_model_from_memory_buffer", "ov_core_compile_model", "ov_model_free",
	"ov_model_reshape_single_input", "ov_partial_shape_create_static", "ov_partial_shape_free",
	"ov_compiled_model_create_infer_request", "ov_compiled_model_free", "ov_infer_request_set_input_tensor",
	"ov_infer_request_get_tensor", "ov_infer_request_free", "ov_tensor_create_from_host_ptr",
	"ov_tensor_data", "ov_tensor_get_shape", "ov_tensor_free", "ov_shape_create", "ov_shape_free",
	"ov_preprocess_prepostprocessor_create", "ov_preprocess_prepostprocessor_free", "ov_preprocess_prepostprocessor_get_input_info",
	"ov_preprocess_input_info_free", "ov_preprocess_input_info_get_tensor_info", "ov_preprocess_input_tensor_info_free",
	"ov_preprocess_input_tensor_info_set_element_type", "ov_preprocess_input_tensor_info_set_layout",
	"ov_preprocess_input_tensor_info_set_spatial_static_shape", "ov_preprocess_input_info_get_preprocess_steps",
	"ov_preprocess_preprocess_steps_free", "ov_preprocess_preprocess_steps_convert_element_type",
	"ov_preprocess_preprocess_steps_reverse_channels", "ov_preprocess_preprocess_steps_resize",
	"ov_preprocess_input_info_get_model_info", "ov_preprocess_input_model_info_free", "ov_preprocess_input_model_info_set_layout",
	"ov_preprocess_prepostprocessor_build", "ov_layout_create", "ov_layout_free",
	"ov_infer_request_start_async", "ov_infer_request_wait", "ov_infer_request_set_callback",
};
static const char* (*ov_last_err)(void);
static int (*ov_get_prop)(void*, const char*, char**);
static void (*ov_free_str)(const char*);

// veil_ov_open loads the library at path and resolves every symbol; it
// returns NULL or a message (static or from dlerror) saying what failed.
static const char* veil_ov_open(const char* path) {
	void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) return dlerror();
	for (int i = 0; i < S_count; i++) {
		ov_sym[i] = dlsym(h, ov_names[i]);
		if (!ov_sym[i]) return ov_names[i];
	}
	ov_last_err = (const char* (*)(void))dlsym(h, "ov_get_last_err_msg");
	ov_get_prop = (int (*)(void*, const char*, char**))dlsym(h, "ov_compiled_model_get_property");
	ov_free_str = (void (*)(const char*))dlsym(h, "ov_free");
	if (!ov_get_prop || !ov_free_str) return "ov_compiled_model_get_property";
	return NULL;
}

static const char* veil_ov_err(void) { return ov_last_err ? ov_last_err() : ""; }

static ov_status veil_ov_core_create(void** core) { return ((ov_status(*)(void**))ov_sym[S_core_create])(core); }
static void veil_ov_core_free(void* core) { ((void(*)(void*))ov_sym[S_core_free])(core); }
// veil_ov_read_model parses the ONNX model in buf (n bytes).
static ov_status veil_ov_read_model(void* core, const char* buf, size_t n, void** model) {
	return ((ov_status(*)(void*, const char*, size_t, const void*, void**))ov_sym[S_core_read_model_mem])(core, buf, n, NULL, model);
}
static void veil_ov_model_free(void* m) { ((void(*)(void*))ov_sym[S_model_free])(m); }

// veil_ov_preprocess builds, from model (input [1,3,h,w], RGB floats), a
// model whose input is the picture as veil holds it: [1,sh,sw,3] BGR
// bytes. Resizing to h x w (bilinear), converting to floats and swapping
// to RGB, in that order as OpenCV's blobFromImage does, then run inside
// the compiled network, on the frame's own bytes: no float copy of the
// picture is made (11 MB for a 720p sweep, allocated per call). Resizing
// after the conversion, on floats, cost more (measured:
// docs/benchmarks/figures-from-code-comments.md).
static ov_status veil_ov_preprocess(void* model, int64_t h, int64_t w, int64_t sh, int64_t sw, void** out) {
	void *ppp = NULL, *in = NULL, *ti = NULL, *steps = NULL, *mi = NULL, *nhwc = NULL, *nchw = NULL;
	ov_status st = ((ov_status(*)(void*, void**))ov_sym[S_ppp_create])(model, &ppp);
	if (!st) st = ((ov_status(*)(void*, void**))ov_sym[S_ppp_input])(ppp, &in);
	if (!st) st = ((ov_status(*)(void*, void**))ov_sym[S_ppp_tensor_info])(in, &ti);
	if (!st) st = ((ov_status(*)(void*, int))ov_sym[S_ppp_tensor_type])(ti, OV_U8);
	if (!st) st = ((ov_status(*)(const char*, void**))ov_sym[S_layout_create])("NHWC", &nhwc);
	if (!st) st = ((ov_status(*)(void*, void*))ov_sym[S_ppp_tensor_layout])(ti, nhwc);
	if (!st) st = ((ov_status(*)(void*, size_t, size_t))ov_sym[S_ppp_tensor_spatial])(ti, (size_t)sh, (size_t)sw);
	if (!st) st = ((ov_status(*)(void*, void**))ov_sym[S_ppp_steps])(in, &steps);
	if (!st && (sh != h || sw != w)) st = ((ov_status(*)(void*, int))ov_sym[S_ppp_resize])(steps, 0); // RESIZE_LINEAR
	if (!st) st = ((ov_status(*)(void*, int))ov_sym[S_ppp_convert_type])(steps, OV_F32);
	if (!st) st = ((ov_status(*)(void*))ov_sym[S_ppp_reverse_channels])(steps);
	if (!st) st = ((ov_status(*)(void*, void**))ov_sym[S_ppp_model_info])(in, &mi);
	if (!st) st = ((ov_status(*)(const char*, void**))ov_sym[S_layout_create])("NCHW", &nchw);
	if (!st) st = ((ov_status(*)(void*, void*))ov_sym[S_ppp_model_layout])(mi, nchw);
	if (!st) st = ((ov_status(*)(void*, void**))ov_sym[S_ppp_build])(ppp, out);
	if (nchw) ((void(*)(void*))ov_sym[S_layout_free])(nchw);
	if (nhwc) ((void(*)(void*))ov_sym[S_layout_free])(nhwc);
	if (mi) ((void(*)(void*))ov_sym[S_ppp_model_info_free])(mi);
	if (steps) ((void(*)(void*))ov_sym[S_ppp_steps_free])(steps);
	if (ti) ((void(*)(void*))ov_sym[S_ppp_tensor_info_free])(ti);
	if (in) ((void(*)(void*))ov_sym[S_ppp_input_free])(in);
	if (ppp) ((void(*)(void*))ov_sym[S_ppp_free])(ppp);
	return st;
}

// veil_ov_compile reads the model in buf, reshapes it to [1,3,h,w], puts
// veil_ov_preprocess in front for pictures of sh x sw, and compiles it for
// the CPU with thread and precision hints (precision "" leaves OpenVINO's own
// choice for this CPU): for latency (one stream: one inference at a time
// on every thread) when streams is "1", else with that many streams, which
// run that many inferences at once, each on its share of the threads.
static ov_status veil_ov_compile(void* core, const char* buf, size_t n, int64_t h, int64_t w, int64_t sh, int64_t sw, const char* threads, const char* streams, const char* precision, void** compiled) {
	// The model is read afresh: reshaping and preprocessing change it in place.
	void* model = NULL;
	ov_status st = veil_ov_read_model(core, buf, n, &model);
	if (st) return st;
	int64_t dims[4] = {1, 3, h, w};
	ov_partial_shape_t ps;
	st = ((ov_status(*)(int64_t, const int64_t*, ov_partial_shape_t*))ov_sym[S_partial_shape_create_static])(4, dims, &ps);
	if (!st) {
		st = ((ov_status(*)(void*, ov_partial_shape_t))ov_sym[S_model_reshape_single_input])(model, ps);
		((void(*)(ov_partial_shape_t*))ov_sym[S_partial_shape_free])(&ps);
	}
	void* ppm = NULL;
	if (!st) st = veil_ov_preprocess(model, h, w, sh, sw, &ppm);
	if (st) {
		veil_ov_model_free(model);
		return st;
	}
	typedef ov_status (*compile_fn)(void*, void*, const char*, size_t, void**, ...);
	compile_fn f = (compile_fn)ov_sym[S_core_compile_model];
	const char* k = "PERFORMANCE_HINT";
	const char* v = "LATENCY";
	if (strcmp(streams, "1") != 0) {
		k = "NUM_STREAMS";
		v = streams;
	}
	if (precision[0])
		st = f(core, model, "CPU", 6, compiled, k, v, "INFERENCE_NUM_THREADS", threads, "INFERENCE_PRECISION_HINT", precision);
	else
		st = f(core, model, "CPU", 4, compiled, k, v, "INFERENCE_NUM_THREADS", threads);
	veil_ov_model_free(ppm);
	veil_ov_model_free(model);
	return st;
}
// veil_ov_precision copies the compiled model's inference precision
// (e.g. "bf16") into out.
static ov_status veil_ov_precision(void* compiled, char* out, size_t n) {
	char* v = NULL;
	ov_status st = ov_get_prop(compiled, "INFERENCE_PRECISION_HINT", &v);
	if (st) return st;
	strncpy(out, v, n - 1);
	out[n - 1] = 0;
	ov_free_str(v);
	return 0;
}
static void veil_ov_compiled_free(void* c) { ((void(*)(void*))ov_sym[S_compiled_model_free])(c); }
static ov_status veil_ov_request(void* compiled, void** req) {
	return ((ov_status(*)(void*, void**))ov_sym[S_compiled_model_create_infer_request])(compiled, req);
}
static void veil_ov_request_free(void* r) { ((void(*)(void*))ov_sym[S_infer_request_free])(r); }

// ov_callback_t as OpenVINO's C API declares it. OpenVINO keeps the
// pointer it is given, not a copy: each lane owns one (veil_ov_signal_new)
// for as long as any request may call it.
typedef struct { void (*callback_func)(void* args); void* args; } ov_callback_t;

// veil_ov_done runs on OpenVINO's thread when an inference ends: it tells
// the lane's eventfd, which the lane's goroutine waits on through Go's
// poller, so no Go thread sits in a native call holding a P meanwhile.
static void veil_ov_done(void* args) {
	uint64_t one = 1;
	while (write((int)(intptr_t)args, &one, sizeof one) < 0 && errno == EINTR) {}
}
static ov_callback_t* veil_ov_signal_new(int fd) {
	ov_callback_t* cb = malloc(sizeof *cb);
	if (cb) { cb->callback_func = veil_ov_done; cb->args = (void*)(intptr_t)fd; }
	return cb;
}

// veil_ov_start starts req on the BGR picture [1,h,w,3] at data; cb is
// called when it ends. On success *tensor holds the input tensor, which
// veil_ov_finish frees once the inference has ended; data must stay put
// until then.
static ov_status veil_ov_start(void* req, uint8_t* data, int64_t h, int64_t w, ov_callback_t* cb, void** tensor) {
	int64_t dims[4] = {1, h, w, 3};
	ov_shape_t shape;
	ov_status st = ((ov_status(*)(int64_t, const int64_t*, ov_shape_t*))ov_sym[S_shape_create])(4, dims, &shape);
	if (st) return st;
	void* t = NULL;
	st = ((ov_status(*)(int, ov_shape_t, void*, void**))ov_sym[S_tensor_create_from_host_ptr])(OV_U8, shape, data, &t);
	((ov_status(*)(ov_shape_t*))ov_sym[S_shape_free])(&shape);
	if (st) return st;
	st = ((ov_status(*)(void*, void*))ov_sym[S_infer_request_set_input_tensor])(req, t);
	if (!st) st = ((ov_status(*)(void*, const ov_callback_t*))ov_sym[S_infer_request_set_callback])(req, cb);
	if (!st) st = ((ov_status(*)(void*))ov_sym[S_infer_request_start_async])(req);
	if (st) {
		((void(*)(void*))ov_sym[S_tensor_free])(t);
		return st;
	}
	*tensor = t;
	return 0;
}

// veil_ov_finish waits for req's inference (already signalled: this only
// collects its status) and frees its input tensor.
static ov_status veil_ov_finish(void* req, void* tensor) {
	ov_status st = ((ov_status(*)(void*))ov_sym[S_infer_request_wait])(req);
	((void(*)(void*))ov_sym[S_tensor_free])(tensor);
	return st;
}

// veil_ov_output copies the float32 output called name, of at most cap
// values, into out, and its dims (at most 4; the rest 0) into dims.
static ov_status veil_ov_output(void* req, const char* name, float* out, int64_t cap, int64_t* dims) {
	void* t = NULL;
	ov_status st = ((ov_status(*)(void*, const char*, void**))ov_sym[S_infer_request_get_tensor])(req, name, &t);
	if (st) return st;
	ov_shape_t shape;
	st = ((ov_status(*)(void*, ov_shape_t*))ov_sym[S_tensor_get_shape])(t, &shape);
	if (st) { ((void(*)(void*))ov_sym[S_tensor_free])(t); return st; }
	int64_t n = 1;
	for (int i = 0; i < 4; i++) dims[i] = 0;
	for (int64_t i = 0; i < shape.rank && i < 4; i++) { dims[i] = shape.dims[i]; n *= shape.dims[i]; }
	int rank = (int)shape.rank;
	((ov_status(*)(ov_shape_t*))ov_sym[S_shape_free])(&shape);
	void* data = NULL;
	st = ((ov_status(*)(void*, void**))ov_sym[S_tensor_data])(t, &data);
	if (!st) {
		if (rank < 1 || rank > 4 || n > cap) st = -1;
		else memcpy(out, data, n * sizeof(float));
	}
	((void(*)(void*))ov_sym[S_tensor_free])(t);
	return st;
}
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
