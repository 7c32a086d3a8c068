package encode

// The one native call of this package outside libav: BGR to YUV 4:2:0 for
// x264 by libyuv (Debian's libyuv-dev), with SIMD. swscale, which did it
// before, has no SIMD path for packed BGR in FFmpeg 5.1, so it was
// slower, and a copy of the picture into an AVFrame first (2.7 MB at
// 720p) is no longer needed either, since libyuv reads the Go buffer in
// place (measured: docs/benchmarks/figures-from-code-comments.md).

/*
#cgo LDFLAGS: -lyuv
#include <libyuv.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// bgrToI420 converts the w x h top-left of src (packed BGR, srcStride
// bytes a row; w and h even) into the three planes (BT.601, limited
// range, as swscale's default). src is read during the call only.
func bgrToI420(src []byte, srcStride int, y, u, v unsafe.Pointer, ys, us, vs, w, h int) error {
	if w <= 0 || h <= 0 || w%2 != 0 || h%2 != 0 || srcStride < 3*w || len(src) < (h-1)*srcStride+3*w {
		return fmt.Errorf("encode: converting a %dx%d picture from %d bytes (stride %d)", w, h, len(src), srcStride)
	}
	// libyuv's "RGB24" is B, G, R in memory: veil's BGR.
	if rc := C.RGB24ToI420((*C.uint8_t)(unsafe.Pointer(&src[0])), C.int(srcStride),
		(*C.uint8_t)(y), C.int(ys), (*C.uint8_t)(u), C.int(us), (*C.uint8_t)(v), C.int(vs),
		C.int(w), C.int(h)); rc != 0 {
		return fmt.Errorf("encode: libyuv RGB24ToI420 returned %d", int(rc))
	}
	return nil
}
