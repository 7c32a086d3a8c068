// The few OpenCV calls veil makes, behind a C interface, so that veil links
// only the modules it uses (core, imgproc, dnn, objdetect) instead of every
// module gocv's wrapper links (with Qt, GDAL, GStreamer and about 170 more
// libraries behind them). Every function catches OpenCV's exceptions and
// returns them as a message the caller frees (free); NULL is success.
// Every object handed out is counted until freed (veil_cv_live), which a
// test uses to prove that whoever allocates native memory frees it.
#ifndef VEIL_OPENCV_H
#define VEIL_OPENCV_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

// An output of a forward pass: a float32 tensor of 4 dims that stays valid
// until veil_cv_mat_free(mat).
typedef struct {
	void* mat;
	float* data;
	int dims[4];
} veil_cv_tensor;

char* veil_cv_net_read(const void* model, size_t n, void** net);
void veil_cv_net_free(void* net);
// veil_cv_net_forward runs net on the packed BGR picture bgr (h x w),
// resized to inH x inW, RGB, float32 NCHW (cv::dnn::blobFromImage with
// scale 1, no mean and swapRB), and returns the outputs called
// names[0..n-1] in outs.
char* veil_cv_net_forward(void* net, const uint8_t* bgr, int h, int w, int inH, int inW, const char** names, int n, veil_cv_tensor* outs);
void veil_cv_mat_free(void* mat);

char* veil_cv_cascade_load(const char* path, void** cascade);
void veil_cv_cascade_free(void* cascade);
// veil_cv_cascade_detect finds faces of at least min px in the grey of
// bgr; *rects (x, y, w, h each, *n of them) is freed with veil_cv_ints_free.
char* veil_cv_cascade_detect(void* cascade, const uint8_t* bgr, int h, int w, int min, int** rects, int* n);
void veil_cv_ints_free(int* p);

// veil_cv_live is how many objects handed out above are not yet freed.
long veil_cv_live(void);

#ifdef __cplusplus
}
#endif
#endif
