package detect

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/veilproject/veil/blur"
)

// Haar is OpenCV's Viola-Jones frontal face cascade: no CNN, fast to load,
// but blind to profiles, tilted and small faces. Kept as a named fallback
// for machines that cannot run the CNN, never as the default.
type Haar struct {
	cc cvCascade
}

// NewHaar loads the cascade XML at path.
func NewHaar(path string) (*Haar, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("haar cascade %s: %w (install Debian's opencv-data)", path, err)
	}
	cc, err := loadCascade(path)
	if err != nil {
		return nil, fmt.Errorf("haar cascade %s: %w", path, err)
	}
	return &Haar{cc: cc}, nil
}

// Name implements blur.Detector.
func (h *Haar) Name() string { return KindHaar }

// Close frees the cascade.
func (h *Haar) Close() error {
	h.cc.free()
	h.cc = cvCascade{}
	return nil
}

// Detect implements blur.Detector.
func (h *Haar) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height*3 {
		return nil, errors.New("haar: bad image buffer")
	}
	rects, err := h.cc.detect(img.Pix, img.Width, img.Height, 12)
	if err != nil {
		return nil, fmt.Errorf("haar: %w", err)
	}
	dets := make([]blur.Detection, 0, len(rects))
	for _, r := range rects {
		dets = append(dets, blur.Detection{Box: r, Score: 1})
	}
	return dets, ctx.Err()
}
