// openvino_shim.c: veil's C interface to OpenVINO (openvino_shim.h). It
// opens OpenVINO's C library at run time and wraps the calls veil makes;
// everything it creates is freed by the Go side's matching call, and
// TestOpenVINOFreesWhatItAllocates counts that.
#include "openvino_shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

// The few OpenVINO C API (openvino/c/*.h, 2026.4) types and functions veil
// uses, declared here so that veil builds without OpenVINO's headers; the
// library is opened at run time from the wheel fetch-runtimes.sh unpacked.
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
const char* veil_ov_open(const char* path) {
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

const char* veil_ov_err(void) { return ov_last_err ? ov_last_err() : ""; }

ov_status veil_ov_core_create(void** core) { return ((ov_status(*)(void**))ov_sym[S_core_create])(core); }
void veil_ov_core_free(void* core) { ((void(*)(void*))ov_sym[S_core_free])(core); }
// veil_ov_read_model parses the ONNX model in buf (n bytes).
ov_status veil_ov_read_model(void* core, const char* buf, size_t n, void** model) {
	return ((ov_status(*)(void*, const char*, size_t, const void*, void**))ov_sym[S_core_read_model_mem])(core, buf, n, NULL, model);
}
void veil_ov_model_free(void* m) { ((void(*)(void*))ov_sym[S_model_free])(m); }

// veil_ov_preprocess builds, from model (input [1,3,h,w], RGB floats), a
// model whose input is the picture as veil holds it: [1,sh,sw,3] BGR
// bytes. Resizing to h x w (bilinear), converting to floats and swapping
// to RGB, in that order as OpenCV's blobFromImage does, then run inside
// the compiled network, on the frame's own bytes: no float copy of the
// picture is made (11 MB for a 720p sweep, allocated per call). Resizing
// after the conversion, on floats, cost more (measured:
// docs/benchmarks/figures-from-code-comments.md).
ov_status veil_ov_preprocess(void* model, int64_t h, int64_t w, int64_t sh, int64_t sw, void** out) {
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
ov_status veil_ov_compile(void* core, const char* buf, size_t n, int64_t h, int64_t w, int64_t sh, int64_t sw, const char* threads, const char* streams, const char* precision, void** compiled) {
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
ov_status veil_ov_precision(void* compiled, char* out, size_t n) {
	char* v = NULL;
	ov_status st = ov_get_prop(compiled, "INFERENCE_PRECISION_HINT", &v);
	if (st) return st;
	strncpy(out, v, n - 1);
	out[n - 1] = 0;
	ov_free_str(v);
	return 0;
}
void veil_ov_compiled_free(void* c) { ((void(*)(void*))ov_sym[S_compiled_model_free])(c); }
ov_status veil_ov_request(void* compiled, void** req) {
	return ((ov_status(*)(void*, void**))ov_sym[S_compiled_model_create_infer_request])(compiled, req);
}
void veil_ov_request_free(void* r) { ((void(*)(void*))ov_sym[S_infer_request_free])(r); }

// ov_callback_t as OpenVINO's C API declares it. OpenVINO keeps the
// pointer it is given, not a copy: each lane owns one (veil_ov_signal_new)
// for as long as any request may call it.

// veil_ov_done runs on OpenVINO's thread when an inference ends: it tells
// the lane's eventfd, which the lane's goroutine waits on through Go's
// poller, so no Go thread sits in a native call holding a P meanwhile.
void veil_ov_done(void* args) {
	uint64_t one = 1;
	while (write((int)(intptr_t)args, &one, sizeof one) < 0 && errno == EINTR) {}
}
ov_callback_t* veil_ov_signal_new(int fd) {
	ov_callback_t* cb = malloc(sizeof *cb);
	if (cb) { cb->callback_func = veil_ov_done; cb->args = (void*)(intptr_t)fd; }
	return cb;
}

// veil_ov_start starts req on the BGR picture [1,h,w,3] at data; cb is
// called when it ends. On success *tensor holds the input tensor, which
// veil_ov_finish frees once the inference has ended; data must stay put
// until then.
ov_status veil_ov_start(void* req, uint8_t* data, int64_t h, int64_t w, ov_callback_t* cb, void** tensor) {
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
ov_status veil_ov_finish(void* req, void* tensor) {
	ov_status st = ((ov_status(*)(void*))ov_sym[S_infer_request_wait])(req);
	((void(*)(void*))ov_sym[S_tensor_free])(tensor);
	return st;
}

// veil_ov_output copies the float32 output called name, of at most cap
// values, into out, and its dims (at most 4; the rest 0) into dims.
ov_status veil_ov_output(void* req, const char* name, float* out, int64_t cap, int64_t* dims) {
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
