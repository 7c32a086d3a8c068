package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect"
)

// obscureFlags are the detector and obscuring options shared by commands.
type obscureFlags struct {
	blur blur.Config
	det  detect.Config
	mode string
}

func (o *obscureFlags) register(fs *flag.FlagSet, deadline time.Duration) {
	fs.StringVar(&o.mode, "mode", string(blur.ModeBlur), "how faces are obscured: blur (box blur, kernel = face size), mosaic (at most 8 cells across), fill (flat black)")
	fs.Float64Var(&o.blur.Margin, "margin", 0.25, "enlarge each face box by this fraction of its size on every side")
	fs.IntVar(&o.blur.MosaicCells, "mosaic-cells", 6, "cells across a face in mosaic mode (1-8)")
	fs.DurationVar(&o.blur.Deadline, "deadline", deadline, "longest wait for the detector on one frame before that frame is obscured whole")
	fs.StringVar(&o.blur.OnFailure, "on-failure", "obscure", "a frame the detector could not vouch for is obscured whole (obscure) or left out (drop)")
	fs.StringVar(&o.det.Kind, "detector", detect.KindCenterFace, "face detector: centerface (CNN) or haar (weak fallback)")
	fs.Float64Var(&o.det.Threshold, "threshold", 0.2, "detection score threshold in (0, 1); lower finds more faces")
	fs.Float64Var(&o.det.Scale, "scale", 1, "resize factor before detection; 2 finds faces under ~16 px at 3-4x the cost")
	fs.StringVar(&o.det.ModelDir, "model-dir", detect.DefaultModelDir(), "directory holding centerface.onnx (make models fills it)")
}

func (o *obscureFlags) validate() error {
	o.blur.Mode = blur.Mode(o.mode)
	o.blur.Defaults()
	if err := o.blur.Validate(""); err != nil {
		return usageError{fmt.Errorf("-%s", err)}
	}
	o.det.Defaults()
	if err := o.det.Validate("detector"); err != nil {
		return usageError{err}
	}
	return nil
}

func newFlagSet(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}
