// Package blurtest is for the tests of blur's users: they need obscured
// frames (blur.Frame, which only a blur.Stage makes) and not faces. Only
// test files may import it (TestArrowsPointOneWay): a detector that finds
// nothing must never reach a camera.
package blurtest

import (
	"context"

	"github.com/veilproject/veil/blur"
)

// NoFaces is a detector that vouches for every frame at once and finds no
// face in it.
type NoFaces struct{}

// Detect implements blur.Detector.
func (NoFaces) Detect(context.Context, blur.Image) ([]blur.Detection, error) { return nil, nil }

// Name implements blur.Detector.
func (NoFaces) Name() string { return "none" }

var _ blur.Detector = NoFaces{}
