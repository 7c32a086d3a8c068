package detect

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"sort"

	"github.com/veilproject/veil/blur"
)

// CenterFace's tensors, by the names its ONNX graph gives them: the input,
// then the heatmap, the box scales and the box offsets. Every runtime
// reads them from here.
const centerFaceInput = "input.1"

var centerFaceOutputs = [3]string{"537", "538", "539"}

// CenterFace runs the CenterFace CNN (Xu et al. 2019, evaluated there on
// WIDER FACE; its scores: docs/benchmarks/figures-from-code-comments.md)
// through OpenCV's DNN module. The network is fully convolutional, so it
// takes any input whose sides are multiples of 32.
//
// OpenCV 4.6 does not re-infer the upsampling layers' shapes when the input
// size changes: a net first run at one size returns garbage (thousands of
// squashed boxes) at another. So the net is rebuilt from the model bytes
// whenever the input size changes; a video keeps one size, so that costs
// one load per file or camera.
type CenterFace struct {
	model     []byte
	net       cvNet
	netSize   image.Point // input size the net has run at; zero when fresh
	loaded    bool
	threshold float32
	scale     float64
	outs      []string
}

// NewCenterFace loads the ONNX model (its bytes, checked by ReadModel);
// scale resizes frames before inference (see Config.Scale).
func NewCenterFace(model []byte, threshold float32, scale float64) (*CenterFace, error) {
	c := &CenterFace{model: model, threshold: threshold, scale: scale, outs: centerFaceOutputs[:]}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("face model: %w", err)
	}
	return c, nil
}

// load builds a fresh net, replacing the current one. A fresh net takes
// any input size once (netSize zero).
func (c *CenterFace) load() error {
	net, err := readNet(c.model)
	if err != nil {
		return fmt.Errorf("OpenCV could not load the model: %v", err)
	}
	if c.loaded {
		c.net.free()
	}
	c.net, c.netSize, c.loaded = net, image.Point{}, true
	return nil
}

// Name implements blur.Detector.
func (c *CenterFace) Name() string { return KindCenterFace }

// Close frees the network.
func (c *CenterFace) Close() error {
	if !c.loaded {
		return nil
	}
	c.loaded = false
	c.net.free()
	return nil
}

// Detect implements blur.Detector.
func (c *CenterFace) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height*3 {
		return nil, errors.New("centerface: bad image buffer")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := netInput(image.Pt(img.Width, img.Height), c.scale)
	inW, inH := in.X, in.Y
	if in != c.netSize {
		if c.netSize != (image.Point{}) {
			if err := c.load(); err != nil {
				return nil, fmt.Errorf("centerface: %w", err)
			}
		}
		c.netSize = in
	}
	outs, err := c.net.forward(img.Pix, img.Width, img.Height, inW, inH, c.outs)
	if err != nil {
		return nil, fmt.Errorf("centerface: %w", err)
	}
	defer func() {
		for i := range outs {
			outs[i].free()
		}
	}()
	if len(outs) != 3 {
		return nil, fmt.Errorf("centerface: %d outputs, want 3", len(outs))
	}
	hs, ss, fs := outs[0].Dims, outs[1].Dims, outs[2].Dims
	if ss[1] != 2 || fs[1] != 2 || hs[2] != ss[2] || hs[3] != ss[3] || fs[2] != hs[2] || fs[3] != hs[3] {
		return nil, fmt.Errorf("centerface: unexpected output shapes %v %v %v", hs, ss, fs)
	}
	dets := decodeMaps(outs[0].Data, outs[1].Data, outs[2].Data, hs[2], hs[3], c.threshold, inW, inH)
	return toFrame(dets, inW, inH, img.Width, img.Height), ctx.Err()
}

// netInput is the network's input size for a picture of size src: src
// scaled, rounded up to multiples of 32 (CenterFace's coarsest stride).
// Both runtimes resize the picture to it.
func netInput(src image.Point, scale float64) image.Point {
	up := func(v int) int { return int(math.Ceil(float64(v)*scale/32)) * 32 }
	return image.Pt(up(src.X), up(src.Y))
}

// toFrame maps boxes from the network's input (inW x inH, the frame
// resized) back to the frame's w x h pixels.
func toFrame(dets []blur.Detection, inW, inH, w, h int) []blur.Detection {
	sx := float64(inW) / float64(w)
	sy := float64(inH) / float64(h)
	for i := range dets {
		b := dets[i].Box
		dets[i].Box = image.Rect(int(float64(b.Min.X)/sx), int(float64(b.Min.Y)/sy),
			int(math.Ceil(float64(b.Max.X)/sx)), int(math.Ceil(float64(b.Max.Y)/sy))).
			Intersect(image.Rect(0, 0, w, h))
	}
	return dets
}

// decodeMaps turns the heatmap (gh x gw), log-scale and offset maps (2
// planes each), all at stride 4, into boxes in input pixels, then
// suppresses overlaps.
func decodeMaps(hm, sc, of []float32, gh, gw int, thr float32, inW, inH int) []blur.Detection {
	plane := gh * gw
	var dets []blur.Detection
	for y := 0; y < gh; y++ {
		for x := 0; x < gw; x++ {
			i := y*gw + x
			p := hm[i]
			if !(p > thr) {
				continue
			}
			bh := math.Exp(float64(sc[i])) * 4
			bw := math.Exp(float64(sc[plane+i])) * 4
			oy, ox := float64(of[i]), float64(of[plane+i])
			x1 := math.Max(0, (float64(x)+ox+0.5)*4-bw/2)
			y1 := math.Max(0, (float64(y)+oy+0.5)*4-bh/2)
			x1, y1 = math.Min(x1, float64(inW)), math.Min(y1, float64(inH))
			x2, y2 := math.Min(x1+bw, float64(inW)), math.Min(y1+bh, float64(inH))
			r := image.Rect(int(x1), int(y1), int(math.Ceil(x2)), int(math.Ceil(y2)))
			if r.Empty() {
				continue
			}
			dets = append(dets, blur.Detection{Box: r, Score: min(p, 1)})
		}
	}
	return nms(dets, 0.3)
}

// nms keeps the highest-scored of any boxes overlapping by IoU >= thr.
func nms(dets []blur.Detection, thr float64) []blur.Detection {
	sort.Slice(dets, func(i, j int) bool { return dets[i].Score > dets[j].Score })
	keep := dets[:0]
	for _, d := range dets {
		ok := true
		for _, k := range keep {
			if blur.IoU(d.Box, k.Box) >= thr {
				ok = false
				break
			}
		}
		if ok {
			keep = append(keep, d)
		}
	}
	return keep
}
