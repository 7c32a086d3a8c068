package detect

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/veilproject/veil/blur"
)

// onnxRuntimeLib is the library's file name inside the runtime directory.
const onnxRuntimeLib = "libonnxruntime.so." + ONNXRuntimeVersion

// ONNX Runtime keeps one environment per process: the library is loaded
// once, from the first directory asked for.
var ortEnv struct {
	sync.Mutex
	dir string
	err error
}

func loadONNXRuntime(dir string) error {
	path := filepath.Join(dir, onnxRuntimeLib)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("onnxruntime runtime %s: not found (run `make runtimes`, or scripts/fetch-runtimes.sh, to fetch it)", path)
	}
	ortEnv.Lock()
	defer ortEnv.Unlock()
	if ortEnv.dir != "" {
		if ortEnv.dir != dir {
			return fmt.Errorf("onnxruntime runtime %s: this process already loaded the one in %s", path, ortEnv.dir)
		}
		return ortEnv.err
	}
	ort.SetSharedLibraryPath(path)
	ortEnv.dir = dir
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		ortEnv.err = fmt.Errorf("onnxruntime runtime %s: %w", path, err)
	}
	return ortEnv.err
}

// ORTCenterFace runs CenterFace on ONNX Runtime's CPU provider, in f32.
// The model's declared sizes are made symbolic at load (symbolicSizes);
// the picture is resized (bilinear, pixel centres aligned as OpenCV's
// resize does) to multiples of 32 and handed over as RGB floats, the
// input OpenCV's blobFromImage makes, so all three runtimes find the same
// faces (the recall test runs each). One session; Detect is not safe for
// concurrent use (the stage and the engine call it from one goroutine at
// a time).
type ORTCenterFace struct {
	sess      *ort.DynamicAdvancedSession
	threshold float32
	scale     float64
	io        *ortIO        // tensors for the current input size
	xs, ys    []bilinearTap // blob's taps across and down
	tapsFor   [4]int        // source and target sizes they were made for
	rows      [2][]float32  // source rows interpolated across, for blob
	rowOf     [2]int        // which source row each holds (-1: none)
}

// ortIO is the input and output tensors for one network input size. Their
// data is Go memory the runtime reads and writes in place (nothing is
// copied per call); the runtime's wrappers around it are native and are
// freed when the size changes or the detector closes.
type ortIO struct {
	size  image.Point
	input []float32
	in    *ort.Tensor[float32]
	out   [3]*ort.Tensor[float32] // heatmap, scales, offsets
}

// ortLive counts the runtime objects veil holds (sessions and tensors),
// for the test that shows each is freed.
var ortLive atomic.Int64

func newORTTensor(shape ort.Shape, data []float32) (*ort.Tensor[float32], error) {
	t, err := ort.NewTensor(shape, data)
	if err == nil {
		ortLive.Add(1)
	}
	return t, err
}

func (io *ortIO) free() {
	for _, t := range append([]*ort.Tensor[float32]{io.in}, io.out[:]...) {
		if t != nil {
			t.Destroy()
			ortLive.Add(-1)
		}
	}
	*io = ortIO{}
}

// newORTIO makes the tensors for input size in (multiples of 32).
func newORTIO(in image.Point) (_ *ortIO, err error) {
	io := &ortIO{size: in, input: make([]float32, 3*in.X*in.Y)}
	defer func() {
		if err != nil {
			io.free()
		}
	}()
	if io.in, err = newORTTensor(ort.NewShape(1, 3, int64(in.Y), int64(in.X)), io.input); err != nil {
		return nil, fmt.Errorf("onnxruntime: input: %w", err)
	}
	gh, gw := int64(in.Y/4), int64(in.X/4)
	for i, ch := range []int64{1, 2, 2} {
		if io.out[i], err = newORTTensor(ort.NewShape(1, ch, gh, gw), make([]float32, ch*gh*gw)); err != nil {
			return nil, fmt.Errorf("onnxruntime: output: %w", err)
		}
	}
	return io, nil
}

type bilinearTap struct {
	i0, i1 int // byte offsets of the two source pixels
	w1     float32
}

// NewORTCenterFace loads ONNX Runtime from libDir and the model (its
// bytes, checked by ReadModel), on threads threads (0: one per core).
func NewORTCenterFace(libDir string, model []byte, threshold float32, scale float64, threads int) (*ORTCenterFace, error) {
	if err := loadONNXRuntime(libDir); err != nil {
		return nil, err
	}
	m, err := symbolicSizes(model)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: face model: %w", err)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	defer opts.Destroy()
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	if err := opts.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	// ONNX Runtime's threads spin between inferences by default: one
	// 720p15 camera then took far more CPU than with OpenVINO, and the
	// spinning took the cores decoding and encoding needed (measured:
	// docs/benchmarks/figures-from-code-comments.md).
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(m, []string{centerFaceInput}, centerFaceOutputs[:], opts)
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: face model: %w", err)
	}
	ortLive.Add(1)
	return &ORTCenterFace{sess: sess, threshold: threshold, scale: scale}, nil
}

// Name implements blur.Detector.
func (c *ORTCenterFace) Name() string { return KindCenterFace + "/onnxruntime" }

// Close frees the session. Safe to call twice.
func (c *ORTCenterFace) Close() error {
	if c.sess == nil {
		return nil
	}
	if c.io != nil {
		c.io.free()
		c.io = nil
	}
	err := c.sess.Destroy()
	ortLive.Add(-1)
	c.sess = nil
	return err
}

// Detect implements blur.Detector.
func (c *ORTCenterFace) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	if c.sess == nil {
		return nil, errors.New("centerface: detector closed")
	}
	if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height*3 {
		return nil, errors.New("centerface: bad image buffer")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := netInput(image.Pt(img.Width, img.Height), c.scale)
	if c.io == nil || c.io.size != in {
		if c.io != nil {
			c.io.free()
			c.io = nil
		}
		io, err := newORTIO(in)
		if err != nil {
			return nil, err
		}
		c.io = io
	}
	c.blob(img, in.X, in.Y)
	out := c.io.out
	if err := c.sess.Run([]ort.Value{c.io.in}, []ort.Value{out[0], out[1], out[2]}); err != nil {
		return nil, fmt.Errorf("onnxruntime: %w", err)
	}
	gh, gw := in.Y/4, in.X/4
	dets := decodeMaps(out[0].GetData(), out[1].GetData(), out[2].GetData(), gh, gw, c.threshold, in.X, in.Y)
	return toFrame(dets, in.X, in.Y, img.Width, img.Height), ctx.Err()
}

// blob fills the input tensor with img resized to w x h, as RGB floats in
// planes (NCHW): bilinear with pixel centres aligned, as OpenCV's
// INTER_LINEAR. Each source row is interpolated across once (rows[2], by
// source row) and output rows blend two of them, which is faster than
// blending all four pixels per output pixel (measured:
// docs/benchmarks/figures-from-code-comments.md).
func (c *ORTCenterFace) blob(img blur.Image, w, h int) {
	plane := w * h
	input := c.io.input
	r, g, b := input[:plane], input[plane:2*plane], input[2*plane:]
	if c.tapsFor != [4]int{img.Width, img.Height, w, h} {
		c.xs, c.ys = taps(img.Width, w, 3), taps(img.Height, h, 3*img.Width)
		c.tapsFor = [4]int{img.Width, img.Height, w, h}
		c.rows = [2][]float32{make([]float32, 3*w), make([]float32, 3*w)}
	}
	c.rowOf = [2]int{-1, -1}
	row := func(off int) []float32 {
		sy := off / (3 * img.Width)
		for i := range c.rowOf {
			if c.rowOf[i] == sy {
				return c.rows[i]
			}
		}
		i := 0
		if c.rowOf[0] >= 0 && (c.rowOf[1] < 0 || c.rowOf[0] > c.rowOf[1]) {
			i = 1 // rows come in order: replace the older
		}
		c.rowOf[i] = sy
		src, dst := img.Pix[off:off+3*img.Width], c.rows[i]
		for x, t := range c.xs {
			p0, p1 := src[t.i0:t.i0+3], src[t.i1:t.i1+3]
			d := dst[3*x : 3*x+3]
			d[0] = float32(p0[0]) + t.w1*(float32(p1[0])-float32(p0[0]))
			d[1] = float32(p0[1]) + t.w1*(float32(p1[1])-float32(p0[1]))
			d[2] = float32(p0[2]) + t.w1*(float32(p1[2])-float32(p0[2]))
		}
		return dst
	}
	for y, ty := range c.ys {
		top, bot := row(ty.i0), row(ty.i1)
		wy := ty.w1
		rr, gg, bb := r[y*w:(y+1)*w], g[y*w:(y+1)*w], b[y*w:(y+1)*w]
		for x := range rr {
			t, u := top[3*x:3*x+3], bot[3*x:3*x+3]
			bb[x] = t[0] + wy*(u[0]-t[0]) // BGR bytes into RGB planes
			gg[x] = t[1] + wy*(u[1]-t[1])
			rr[x] = t[2] + wy*(u[2]-t[2])
		}
	}
}

// taps maps each of n target positions to the two source positions (of
// src) it blends, as byte offsets (stride bytes a position), and the
// weight of the second.
func taps(src, n, stride int) []bilinearTap {
	out := make([]bilinearTap, n)
	s := float64(src) / float64(n)
	for i := range out {
		f := (float64(i)+0.5)*s - 0.5
		if f < 0 {
			f = 0
		}
		i0 := int(math.Floor(f))
		if i0 >= src-1 {
			out[i] = bilinearTap{i0: (src - 1) * stride, i1: (src - 1) * stride}
			continue
		}
		out[i] = bilinearTap{i0: i0 * stride, i1: (i0 + 1) * stride, w1: float32(f - float64(i0))}
	}
	return out
}

var _ blur.Detector = (*ORTCenterFace)(nil)
