package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/pipeline/config"
)

// obscureFlags sets the blur and detector keys of a config from flags;
// their defaults are the config's (with the environment applied).
type obscureFlags struct {
	cfg    *config.Config
	mode   string
	search string // the default, to notice a change
}

func (o *obscureFlags) register(fs *flag.FlagSet, cfg *config.Config, deadline time.Duration) {
	o.cfg, o.search = cfg, cfg.Blur.Search
	b, d := &cfg.Blur, &cfg.Detector
	fs.StringVar(&o.mode, "mode", string(b.Mode), "how faces are obscured: blur (box blur, kernel = face size), mosaic (at most 8 cells across), fill (flat black)")
	fs.Float64Var(&b.Margin, "margin", b.Margin, "enlarge each face box by this fraction of its size on every side")
	fs.IntVar(&b.MosaicCells, "mosaic-cells", b.MosaicCells, "cells across a face in mosaic mode (1-8)")
	fs.DurationVar(&b.Deadline, "deadline", deadline, "longest wait for the detector on one frame before that frame is obscured whole")
	fs.StringVar(&b.Search, "search", b.Search, "where the detector looks: regions (where faces can newly be, and the whole frame every sweep) or full (every whole frame)")
	fs.StringVar(&b.OnFailure, "on-failure", b.OnFailure, "a frame the detector could not vouch for is obscured whole (obscure) or left out (drop)")
	fs.StringVar(&d.Kind, "detector", d.Kind, "face detector: centerface (CNN) or haar (weak fallback)")
	fs.Float64Var(&d.Threshold, "threshold", d.Threshold, "detection score threshold in (0, 1); lower finds more faces")
	fs.Float64Var(&d.Scale, "scale", d.Scale, "resize factor before detection; 2 finds faces under ~16 px at 3-4x the cost")
	fs.StringVar(&d.ModelDir, "model-dir", d.ModelDir, "directory holding centerface.onnx (make models fills it; $VEIL_MODEL_DIR)")
	fs.StringVar(&d.Runtime, "runtime", d.Runtime, "what runs CenterFace: openvino (fastest here; make runtimes fetches it), onnxruntime (make runtimes too; f32) or opencv (fallback)")
	fs.StringVar(&d.Precision, "precision", d.Precision, "OpenVINO precision: auto (the fastest of f32, bf16 and int8, measured once per machine), f32, bf16 or int8")
}

func (o *obscureFlags) validate() error {
	o.cfg.Blur.Mode = blur.Mode(o.mode)
	if o.cfg.Blur.Search != o.search {
		o.cfg.Blur.Hold = 0 // the other mode's default hold
		o.cfg.Blur.Defaults()
	}
	if err := o.cfg.Blur.Validate(""); err != nil {
		return usageError{fmt.Errorf("-%s", err)}
	}
	if err := o.cfg.Detector.Validate("detector"); err != nil {
		return usageError{err}
	}
	return nil
}

// jobDefaults is the configuration a file job (anonymize, count) starts
// from: the defaults with the environment applied, every frame searched
// whole (see pipeline.FileJob).
func jobDefaults() config.Config {
	var c config.Config
	c.Blur.Search = blur.SearchFull
	config.ApplyEnv(&c, os.Getenv)
	c.Defaults()
	return c
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
