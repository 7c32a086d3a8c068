package detect

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"

	"gocv.io/x/gocv"

	"github.com/veilproject/veil/blur"
)

// Haar is OpenCV's Viola-Jones frontal face cascade: no CNN, fast to load,
// but blind to profiles, tilted and small faces. Kept as a named fallback
// for machines that cannot run the CNN, never as the default.
type Haar struct {
	cc gocv.CascadeClassifier
}

// NewHaar loads the cascade XML at path.
func NewHaar(path string) (*Haar, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("haar cascade %s: %w (install Debian's opencv-data)", path, err)
	}
	cc := gocv.NewCascadeClassifier()
	if !cc.Load(path) {
		cc.Close()
		return nil, fmt.Errorf("haar cascade %s: OpenCV could not load it", path)
	}
	return &Haar{cc: cc}, nil
}

// Name implements blur.Detector.
func (h *Haar) Name() string { return KindHaar }

// Close frees the cascade.
func (h *Haar) Close() error { return h.cc.Close() }

// Detect implements blur.Detector.
func (h *Haar) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height*3 {
		return nil, errors.New("haar: bad image buffer")
	}
	src, err := gocv.NewMatFromBytes(img.Height, img.Width, gocv.MatTypeCV8UC3, img.Pix)
	if err != nil {
		return nil, fmt.Errorf("haar: %w", err)
	}
	defer src.Close()
	gray := gocv.NewMat()
	defer gray.Close()
	gocv.CvtColor(src, &gray, gocv.ColorBGRToGray)
	rects := h.cc.DetectMultiScaleWithParams(gray, 1.1, 3, 0, image.Pt(12, 12), image.Pt(0, 0))
	dets := make([]blur.Detection, 0, len(rects))
	for _, r := range rects {
		dets = append(dets, blur.Detection{Box: r, Score: 1})
	}
	return dets, ctx.Err()
}
