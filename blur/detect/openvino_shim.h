// openvino_shim.h: the small C interface veil's Go code calls to run
// networks on OpenVINO (openvino_shim.c). OpenVINO's library is opened at
// run time (dlopen) from the wheel scripts/fetch-runtimes.sh unpacked, so
// veil builds without OpenVINO's headers; openvino_shim.c declares the few
// types and functions of OpenVINO's C API it uses.
#ifndef VEIL_OPENVINO_SHIM_H
#define VEIL_OPENVINO_SHIM_H

#include <stddef.h>
#include <stdint.h>

typedef int ov_status;
typedef struct { void (*callback_func)(void* args); void* args; } ov_callback_t;

const char* veil_ov_open(const char* path);
const char* veil_ov_err(void);
ov_status veil_ov_core_create(void** core);
void veil_ov_core_free(void* core);
ov_status veil_ov_read_model(void* core, const char* buf, size_t n, void** model);
void veil_ov_model_free(void* m);
ov_status veil_ov_preprocess(void* model, int64_t h, int64_t w, int64_t sh, int64_t sw, void** out);
ov_status veil_ov_compile(void* core, const char* buf, size_t n, int64_t h, int64_t w, int64_t sh, int64_t sw, const char* threads, const char* streams, const char* precision, void** compiled);
ov_status veil_ov_precision(void* compiled, char* out, size_t n);
void veil_ov_compiled_free(void* c);
ov_status veil_ov_request(void* compiled, void** req);
void veil_ov_request_free(void* r);
void veil_ov_done(void* args);
ov_callback_t* veil_ov_signal_new(int fd);
ov_status veil_ov_start(void* req, uint8_t* data, int64_t h, int64_t w, ov_callback_t* cb, void** tensor);
ov_status veil_ov_finish(void* req, void* tensor);
ov_status veil_ov_output(void* req, const char* name, float* out, int64_t cap, int64_t* dims);

#endif
