// Package detectconf is the detector's part of veil.yaml (the key
// detector): which detector, which runtime, where its files are. It is
// apart from package detect, whose runtimes are cgo, so that reading a
// configuration needs no native headers.
package detectconf

import (
	"fmt"
	"os"
	"path/filepath"
)

// OpenVINOVersion is the OpenVINO release veil loads: the libraries inside
// the PyPI wheel openvino==2026.4.1, unpacked by scripts/fetch-runtimes.sh.
const OpenVINOVersion = "2026.4.1"

// ONNXRuntimeVersion is the ONNX Runtime `make runtimes` fetches (the
// shared library inside the PyPI wheel onnxruntime==1.32.0).
const ONNXRuntimeVersion = "1.32.0"

// Kinds of detector.
const (
	KindCenterFace = "centerface"
	KindHaar       = "haar"
)

// Runtimes that run CenterFace.
const (
	RuntimeOpenVINO    = "openvino"
	RuntimeONNXRuntime = "onnxruntime"
	RuntimeOpenCV      = "opencv"
)

// DefaultHaarPath is where Debian's opencv-data package puts the frontal
// face cascade.
const DefaultHaarPath = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml"

// Config chooses and tunes the detector.
type Config struct {
	// Kind is centerface (default) or haar. Haar misses profiles and small
	// faces and is only a fallback; choosing it logs a warning.
	Kind string `yaml:"kind"`
	// ModelDir holds centerface.onnx. It defaults to $VEIL_CACHE/models, or
	// ~/.cache/veil/models ($XDG_CACHE_HOME is honoured); `make models`
	// fills it.
	ModelDir string `yaml:"model_dir"`
	// Threshold is the lowest score kept, in (0, 1). It defaults to 0.2:
	// a false box costs a little scenery, a missed face costs privacy.
	Threshold float64 `yaml:"threshold"`
	// Scale resizes the frame before inference. It defaults to 1. A camera
	// high over a room, whose faces are a few pixels tall, finds more of
	// them at 2, for several times the cost (docs/benchmarks); use it there
	// when the CPU allows.
	Scale float64 `yaml:"scale"`
	// HaarPath is the cascade file for kind haar. It defaults to
	// DefaultHaarPath.
	HaarPath string `yaml:"haar_path"`
	// Runtime runs CenterFace: openvino (OpenVINO's CPU plugin, loaded from
	// RuntimeDir; the default, the fastest measured here), onnxruntime
	// (ONNX Runtime's CPU provider, f32 only) or opencv (OpenCV's DNN
	// module, the fallback that needs nothing fetched).
	Runtime string `yaml:"runtime"`
	// RuntimeDir holds the runtime's libraries `make runtimes` unpacks. It
	// defaults to $VEIL_CACHE/runtimes/openvino-2026.4.1, or
	// onnxruntime-1.32.0 for that runtime.
	RuntimeDir string `yaml:"runtime_dir"`
	// Precision is OpenVINO's inference precision: auto (the default: the
	// fastest, measured at start-up, of f32, OpenVINO's reduced choice for
	// this CPU (bf16 where it has AVX512_BF16 or AMX) and the int8 model
	// where `make models` made it; see ChoosePrecision), f32, bf16 or int8
	// (Int8Model). The recall test checks bf16 and int8 find the faces f32
	// finds.
	Precision string `yaml:"precision"`
	// Threads bounds OpenVINO's inference threads in all; 0 (the default)
	// uses one per core.
	Threads int `yaml:"threads"`
	// Lanes is how many inferences OpenVINO runs at once, each on its share
	// of the threads. 0 (the default) lets the command choose: veil run
	// takes one per camera up to two per core, since on a busy machine one
	// thread per inference wastes less than several that wait for each
	// other, and a camera waiting for a lane can leave a core idle; a file
	// job that searches every whole frame takes one per core, each with its
	// own whole-frame network, and detects the next frames while one is
	// obscured and written. The other runtimes have one lane.
	Lanes int `yaml:"lanes"`
	// LargePerLane gives every lane its own network for inputs over
	// 448x448 (OpenVINO), where they otherwise share one: a file job sets
	// it, since there every input is a whole frame. Not configurable.
	LargePerLane bool `yaml:"-"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Kind == "" {
		c.Kind = KindCenterFace
	}
	if c.ModelDir == "" {
		c.ModelDir = DefaultModelDir()
	}
	if c.Threshold == 0 {
		c.Threshold = 0.2
	}
	if c.Scale == 0 {
		c.Scale = 1
	}
	if c.HaarPath == "" {
		c.HaarPath = DefaultHaarPath
	}
	if c.Runtime == "" {
		c.Runtime = RuntimeOpenVINO
	}
	if c.Precision == "" {
		c.Precision = "auto"
	}
}

// Validate names the first bad key under prefix.
func (c *Config) Validate(prefix string) error {
	switch c.Kind {
	case KindCenterFace, KindHaar:
	default:
		return fmt.Errorf("%s.kind: unknown detector %q (want centerface or haar)", prefix, c.Kind)
	}
	if !(c.Threshold > 0 && c.Threshold < 1) {
		return fmt.Errorf("%s.threshold: %v is outside (0, 1)", prefix, c.Threshold)
	}
	if !(c.Scale >= 0.25 && c.Scale <= 4) {
		return fmt.Errorf("%s.scale: %v is outside [0.25, 4]", prefix, c.Scale)
	}
	switch c.Runtime {
	case RuntimeOpenVINO, RuntimeONNXRuntime, RuntimeOpenCV:
	default:
		return fmt.Errorf("%s.runtime: %q (want openvino, onnxruntime or opencv)", prefix, c.Runtime)
	}
	switch c.Precision {
	case "auto", "f32", "bf16", "int8":
	default:
		return fmt.Errorf("%s.precision: %q (want auto, f32, bf16 or int8)", prefix, c.Precision)
	}
	if c.Runtime != RuntimeOpenVINO && c.Precision != "auto" && c.Precision != "f32" {
		return fmt.Errorf("%s.precision: %s runs on OpenVINO only, not on runtime %s (want auto or f32)", prefix, c.Precision, c.Runtime)
	}
	if c.Threads < 0 || c.Threads > 256 {
		return fmt.Errorf("%s.threads: %d is outside [0, 256]", prefix, c.Threads)
	}
	if c.Lanes < 0 || c.Lanes > 64 {
		return fmt.Errorf("%s.lanes: %d is outside [0, 64]", prefix, c.Lanes)
	}
	return nil
}

// DefaultModelDir is where `make models` caches models: under $VEIL_CACHE,
// the cache root the fetch scripts share, or the user's cache directory.
// ($VEIL_MODEL_DIR, an override of detector.model_dir, is read by
// pipeline/config.)
func DefaultModelDir() string {
	if d := os.Getenv("VEIL_CACHE"); d != "" {
		return filepath.Join(d, "models")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "veil", "models")
	}
	return filepath.Join(os.TempDir(), "veil", "models")
}

// DefaultRuntimeDir is where `make runtimes` unpacks OpenVINO, under the
// same cache root as the models.
func DefaultRuntimeDir() string {
	return filepath.Join(filepath.Dir(DefaultModelDir()), "runtimes", "openvino-"+OpenVINOVersion)
}

// LibDir is where the runtime's libraries are: RuntimeDir, or where
// `make runtimes` unpacks the chosen runtime. (Defaults leaves RuntimeDir
// empty: a command's -runtime flag may change the runtime after them.)
func (c *Config) LibDir() string {
	switch {
	case c.RuntimeDir != "":
		return c.RuntimeDir
	case c.Runtime == RuntimeONNXRuntime:
		return DefaultONNXRuntimeDir()
	}
	return DefaultRuntimeDir()
}

// DefaultONNXRuntimeDir is where `make runtimes` unpacks ONNX Runtime.
func DefaultONNXRuntimeDir() string {
	return filepath.Join(filepath.Dir(DefaultModelDir()), "runtimes", "onnxruntime-"+ONNXRuntimeVersion)
}
