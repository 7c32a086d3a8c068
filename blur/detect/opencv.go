package detect

/*
#cgo CXXFLAGS: -std=c++17 -I/usr/include/opencv4
#cgo CPPFLAGS: -I/usr/include/opencv4
#cgo LDFLAGS: -lopencv_dnn -lopencv_objdetect -lopencv_imgproc -lopencv_core
#include <stdlib.h>
#include "opencv.h"
*/
import "C"

import (
	"errors"
	"image"
	"unsafe"
)

// cvError turns a message from opencv.cpp into an error, freeing it.
func cvError(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

// cvLive is how many OpenCV objects veil made are not yet freed.
func cvLive() int { return int(C.veil_cv_live()) }

func bgrPtr(img []byte) *C.uint8_t { return (*C.uint8_t)(unsafe.Pointer(&img[0])) }

// cvNet is a network loaded by OpenCV's DNN module.
type cvNet struct{ p unsafe.Pointer }

func readNet(model []byte) (cvNet, error) {
	if len(model) == 0 {
		return cvNet{}, errors.New("empty model")
	}
	var p unsafe.Pointer
	err := cvError(C.veil_cv_net_read(unsafe.Pointer(&model[0]), C.size_t(len(model)), &p))
	return cvNet{p}, err
}

func (n cvNet) free() { C.veil_cv_net_free(n.p) }

// cvTensor is one output of a forward pass, valid until free.
type cvTensor struct {
	mat  unsafe.Pointer
	Data []float32
	Dims [4]int
}

func (t *cvTensor) free() {
	C.veil_cv_mat_free(t.mat)
	t.mat, t.Data = nil, nil
}

// forward runs the network on pix (w x h, BGR) resized to inW x inH and
// returns the outputs called names; the caller frees them.
func (n cvNet) forward(pix []byte, w, h, inW, inH int, names []string) ([]cvTensor, error) {
	cnames := make([]*C.char, len(names))
	for i, s := range names {
		cnames[i] = C.CString(s)
		defer C.free(unsafe.Pointer(cnames[i]))
	}
	// The names array is C memory: cgo forbids passing C a Go array of
	// pointers.
	arr := (**C.char)(C.malloc(C.size_t(len(names)) * C.size_t(unsafe.Sizeof(cnames[0]))))
	defer C.free(unsafe.Pointer(arr))
	copy(unsafe.Slice(arr, len(names)), cnames)
	outs := (*C.veil_cv_tensor)(C.malloc(C.size_t(len(names)) * C.size_t(unsafe.Sizeof(C.veil_cv_tensor{}))))
	defer C.free(unsafe.Pointer(outs))
	if err := cvError(C.veil_cv_net_forward(n.p, bgrPtr(pix), C.int(h), C.int(w), C.int(inH), C.int(inW), arr, C.int(len(names)), outs)); err != nil {
		return nil, err
	}
	ts := make([]cvTensor, len(names))
	for i, o := range unsafe.Slice(outs, len(names)) {
		t := &ts[i]
		t.mat = o.mat
		size := 1
		for d := range t.Dims {
			t.Dims[d] = int(o.dims[d])
			size *= t.Dims[d]
		}
		t.Data = unsafe.Slice((*float32)(unsafe.Pointer(o.data)), size)
	}
	return ts, nil
}

// cvCascade is an OpenCV cascade classifier.
type cvCascade struct{ p unsafe.Pointer }

func loadCascade(path string) (cvCascade, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var p unsafe.Pointer
	err := cvError(C.veil_cv_cascade_load(cpath, &p))
	return cvCascade{p}, err
}

func (c cvCascade) free() { C.veil_cv_cascade_free(c.p) }

// detect returns the boxes of at least minSide px found in the grey of
// pix (w x h, BGR), at scale steps of 1.1 with 3 neighbours.
func (c cvCascade) detect(pix []byte, w, h, minSide int) ([]image.Rectangle, error) {
	var rects *C.int
	var n C.int
	if err := cvError(C.veil_cv_cascade_detect(c.p, bgrPtr(pix), C.int(h), C.int(w), C.int(minSide), &rects, &n)); err != nil {
		return nil, err
	}
	defer C.veil_cv_ints_free(rects)
	out := make([]image.Rectangle, 0, int(n))
	for i := range int(n) {
		r := unsafe.Slice((*C.int)(unsafe.Add(unsafe.Pointer(rects), 16*i)), 4)
		out = append(out, image.Rect(int(r[0]), int(r[1]), int(r[0]+r[2]), int(r[1]+r[3])))
	}
	return out, nil
}
