package decode

// The one native call of this package outside libav: the decoder's YUV
// 4:2:0 picture to packed BGR by libyuv (Debian's libyuv-dev), written
// straight into the frame that carries it. swscale did it before into an
// AVFrame of its own, which was then copied out (2.7 MB at 720p: 1280x720
// pixels of 3 bytes).

/*
#cgo LDFLAGS: -lyuv
#include <libyuv.h>
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/asticode/go-astiav"
)

// libyuvFormat reports whether i420ToBGR takes pictures of format pf.
func libyuvFormat(pf astiav.PixelFormat) bool {
	return pf == astiav.PixelFormatYuv420P || pf == astiav.PixelFormatYuvj420P
}

// i420ToBGR converts the decoder's picture f (libyuvFormat) into dst
// (packed BGR, 3*width bytes a row): yuvj420p as the JPEG (full) range,
// yuv420p as limited range, both BT.601, as swscale reads them by default.
// f's planes are read during the call only.
func i420ToBGR(f *astiav.Frame, dst []byte) error {
	w, h := f.Width(), f.Height()
	// AVFrame starts with uint8_t *data[8] (FFmpeg's public, ABI-stable
	// layout); go-astiav has no accessor that does not copy.
	data := (*[8]unsafe.Pointer)(f.UnsafePointer())
	y, u, v := data[0], data[1], data[2]
	if w <= 0 || h <= 0 || len(dst) != 3*w*h || y == nil || u == nil || v == nil {
		return fmt.Errorf("decode: converting a %dx%d picture into %d bytes", w, h, len(dst))
	}
	ls := f.Linesize()
	// libyuv's "RGB24" is B, G, R in memory: veil's BGR.
	py, pu, pv, pd := (*C.uint8_t)(y), (*C.uint8_t)(u), (*C.uint8_t)(v), (*C.uint8_t)(unsafe.Pointer(&dst[0]))
	var rc C.int
	if f.PixelFormat() == astiav.PixelFormatYuvj420P {
		rc = C.J420ToRGB24(py, C.int(ls[0]), pu, C.int(ls[1]), pv, C.int(ls[2]), pd, C.int(3*w), C.int(w), C.int(h))
	} else {
		rc = C.I420ToRGB24(py, C.int(ls[0]), pu, C.int(ls[1]), pv, C.int(ls[2]), pd, C.int(3*w), C.int(w), C.int(h))
	}
	if rc != 0 {
		return fmt.Errorf("decode: libyuv converting %dx%d to BGR returned %d", w, h, int(rc))
	}
	return nil
}
