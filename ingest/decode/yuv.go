package decode

// The one native call of this package outside libav: the decoder's YUV
// 4:2:0 picture to packed BGR by libyuv (Debian's libyuv-dev), written
// straight into the frame that carries it. swscale did it before into an
// AVFrame of its own, which was then copied out (2.7 MB at 720p).

/*
#cgo LDFLAGS: -lyuv
#include <libyuv.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// i420ToBGR converts the w x h picture in the three planes (y, u, v, with
// their strides) into dst (packed BGR, 3*w bytes a row). full is the
// JPEG range (yuvj420p); otherwise limited range. Both BT.601, as
// swscale reads them by default. The planes are read during the call only.
func i420ToBGR(y, u, v unsafe.Pointer, ys, us, vs int, dst []byte, w, h int, full bool) error {
	if w <= 0 || h <= 0 || len(dst) != 3*w*h || y == nil || u == nil || v == nil {
		return fmt.Errorf("decode: converting a %dx%d picture into %d bytes", w, h, len(dst))
	}
	// libyuv's "RGB24" is B, G, R in memory: veil's BGR.
	py, pu, pv, pd := (*C.uint8_t)(y), (*C.uint8_t)(u), (*C.uint8_t)(v), (*C.uint8_t)(unsafe.Pointer(&dst[0]))
	var rc C.int
	if full {
		rc = C.J420ToRGB24(py, C.int(ys), pu, C.int(us), pv, C.int(vs), pd, C.int(3*w), C.int(w), C.int(h))
	} else {
		rc = C.I420ToRGB24(py, C.int(ys), pu, C.int(us), pv, C.int(vs), pd, C.int(3*w), C.int(w), C.int(h))
	}
	if rc != 0 {
		return fmt.Errorf("decode: libyuv converting %dx%d to BGR returned %d", w, h, int(rc))
	}
	return nil
}
