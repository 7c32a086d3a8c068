package blur

import (
	"context"
	"fmt"
	"image"
	"slices"
	"time"
)

// Crop sides the detector runs on in regions mode: a few fixed squares,
// so that a runtime that compiles its network per input size (OpenVINO)
// keeps a handful of networks instead of one per region. Small sides
// matter: a walking person's region at 720p fits 160 or 224 px, and a
// 160-px crop costs a sixth of a 384-px one (with 160 and 224 added, one
// 720p15 camera of vtest answered more of its frames; measured:
// docs/benchmarks/figures-from-code-comments.md).
var cropSides = []int{160, 224, 320, 448, 640}

// CropSizes is the picture sizes region search hands the detector besides
// whole frames: a runtime that compiles a network per size can prepare
// them before the first frame (detect's Prepare).
func CropSizes() []image.Point {
	out := make([]image.Point, len(cropSides))
	for i, s := range cropSides {
		out[i] = image.Pt(s, s)
	}
	return out
}

// A region search whose crops would add up to more pixels than the frame
// is done as one full-frame search instead. A crop costs no more per
// pixel than a whole 720p frame, so below that the crops are cheaper. At
// 0.6, as first set, more frames went whole and more pixels were searched
// in all, whether every frame was searched or every other one (as when
// frames are dropped; measured:
// docs/benchmarks/figures-from-code-comments.md).
const maxRegionShare = 1.0

// search finds the faces of the frame at now: on the whole frame, or, in
// regions mode between sweeps, only in the crops where a face can newly
// be. Why no face is shown between sweeps (see ARCHITECTURE.md): where
// the picture changed since a search last covered it is a motion region,
// which is searched, and only then counts as searched; a face where
// nothing changed was found by that search (or the sweep) and is held
// until the next sweep; one the detector missed is a recall miss, which
// the recall test measures.
//
// Full search does not come here: Begin starts the whole frame's detection.
// A whole-frame search is lent img's pixels: its request is returned, for
// takeBack.
func (s *Stage) search(ctx context.Context, img Image, now time.Duration) ([]Detection, string, *request) {
	boxes, scene, err := s.findMotion(img)
	if err != nil {
		s.log.Error("motion detection failed; searching the whole frame", "err", err)
		scene = true
	}
	full := scene || !s.swept || s.sweepDue(now)
	var crops []image.Rectangle
	if !full {
		crops, full = s.plan(boxes, img.Width, img.Height, now)
	}
	if full {
		dets, reason, lent := s.detect(ctx, img)
		if reason == "" {
			s.swept, s.sweep = true, now
			s.m.searches.full.Inc()
			if err == nil {
				s.mot.searchedAll()
			}
		}
		return dets, reason, lent
	}
	s.m.searches.regions.Inc()
	dets, reason := s.searchCrops(ctx, img, crops)
	if reason == "" {
		s.mot.searched(crops)
	}
	return dets, reason, nil
}

// searchCrops searches the crops side by side, on as many workers as are
// free, and returns their faces in frame pixels. A frame's crops used to
// go one after another, so a camera with five of them waited for five
// inferences in a row while other lanes of the engine could sit idle.
func (s *Stage) searchCrops(ctx context.Context, img Image, crops []image.Rectangle) ([]Detection, string) {
	type inFlight struct {
		r *request
		c image.Rectangle
	}
	var flight []inFlight
	var dets []Detection
	for next := 0; next < len(crops) || len(flight) > 0; {
		for next < len(crops) && s.take() {
			r, reason := s.send(ctx, img, crops[next])
			if reason != "" {
				return nil, reason
			}
			flight = append(flight, inFlight{r, crops[next]})
			next++
		}
		if len(flight) == 0 {
			return nil, s.notReady(ReasonBusy) // every worker is stuck on an older frame
		}
		f := flight[0]
		flight = flight[1:]
		// On a failure the crops still in flight are left to finish: the
		// caller's deadline is cancelled when this returns, which withdraws
		// those not yet started.
		found, reason := s.answer(ctx, f.r, f.c.Dx(), f.c.Dy())
		if reason != "" {
			return nil, reason
		}
		for _, d := range found {
			d.Box = d.Box.Add(f.c.Min).Intersect(image.Rect(0, 0, img.Width, img.Height))
			if !d.Box.Empty() {
				dets = append(dets, d)
			}
		}
	}
	return dets, ""
}

// sweepDue reports whether a sweep is due at stream time now: the
// interval is cut into slots at the camera's phase (Deps.SweepPhase), and
// a sweep is due in every slot that has not had one, so sweeps are never
// further apart than the interval. Cameras started together (as veil run
// starts them) would otherwise sweep in the same frame interval every
// second: a whole-frame search per camera at once on the shared engine, a
// burst that dropped frames while the cores still had time to spare (what
// a 720p whole-frame search took:
// docs/benchmarks/figures-from-code-comments.md).
func (s *Stage) sweepDue(now time.Duration) bool {
	if now < s.sweep {
		return true // the stream's clock went back
	}
	slot := func(t time.Duration) time.Duration { return (t + s.phase) / s.cfg.SweepInterval }
	return slot(now) != slot(s.sweep)
}

// findMotion runs the motion finder, turning a panic into an error: a
// broken motion finder must not pass a frame unsearched.
func (s *Stage) findMotion(img Image) (boxes []image.Rectangle, scene bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("motion: panic: %v", p)
		}
	}()
	if s.motionHook != nil {
		return s.motionHook(img)
	}
	boxes, scene = s.mot.update(img.Pix, img.Width, img.Height)
	return boxes, scene, nil
}

// plan turns motion boxes, and the held faces that are moving, into the
// crops to search. full is true when they would add up to more than the frame
// or a region is too large for the biggest crop.
func (s *Stage) plan(motion []image.Rectangle, w, h int, now time.Duration) (crops []image.Rectangle, full bool) {
	frame := image.Rect(0, 0, w, h)
	var regions []image.Rectangle
	for _, b := range motion {
		// The motion mask is coarse (8 px cells at 1280 wide) and a
		// moving body's face can be at its edge: widen by a cell and a
		// sixteenth of its size. An eighth and 16 px searched more pixels
		// on a busy 720p street for about the same faces: at the default
		// threshold both found every face a full-frame search found
		// (measured: docs/benchmarks/figures-from-code-comments.md).
		m := max(b.Dx(), b.Dy())/16 + 8
		regions = append(regions, b.Inset(-m))
	}
	for _, b := range s.hold.boxes {
		if now-b.at <= s.hold.hold && b.moving() {
			p := s.hold.predicted(b, now)
			regions = append(regions, p.Inset(-max(p.Dx(), p.Dy())/4))
		}
	}
	regions = joinCheaper(merge(regions), frame)
	area := 0
	for _, r := range regions {
		for _, c := range cover(r, frame) {
			if c.Empty() {
				return nil, true // the frame is smaller than a crop
			}
			crops = append(crops, c)
			area += c.Dx() * c.Dy()
		}
	}
	if float64(area) > maxRegionShare*float64(w*h) {
		return nil, true
	}
	return crops, false
}

// tileOverlap is how much neighbouring tiles of a large region overlap, so
// that a face on a tile's edge is whole in the next one.
const tileOverlap = 96

// cover is the crops that search r: of the fixed squares, the size whose
// crops cover r with the least area in all, as one square that holds it
// or as a grid of squares overlapping by tileOverlap. A long region is
// cheaper in several small squares than in one large one (a 700x300
// region: three 320-px squares hold 3/8 of the pixels of two 640-px ones,
// the largest-square tiling this replaced). An empty crop means the frame
// is smaller than every square.
func cover(r, frame image.Rectangle) []image.Rectangle {
	var best []image.Rectangle
	bestArea := 0
	for _, s := range cropSides {
		if s > frame.Dx() || s > frame.Dy() {
			break
		}
		var out []image.Rectangle
		if s >= r.Dx() && s >= r.Dy() {
			out = []image.Rectangle{square(r, s, frame)}
		} else if s > tileOverlap {
			step := s - tileOverlap
			for y := r.Min.Y; ; y += step {
				for x := r.Min.X; ; x += step {
					out = append(out, square(image.Rect(x, y, x+s, y+s), s, frame))
					if x+s >= r.Max.X {
						break
					}
				}
				if y+s >= r.Max.Y {
					break
				}
			}
		}
		if a := len(out) * s * s; len(out) > 0 && (best == nil || a < bestArea) {
			best, bestArea = out, a
		}
	}
	if best == nil {
		return []image.Rectangle{{}}
	}
	return best
}

// merge joins overlapping rectangles while the union costs little more
// than the two apart (at most a third more area); two long regions that
// merely cross stay apart, so that they are not searched as one large
// square.
func merge(rs []image.Rectangle) []image.Rectangle {
	area := func(r image.Rectangle) int { return r.Dx() * r.Dy() }
	for changed := true; changed; {
		changed = false
		for i := 0; i < len(rs) && !changed; i++ {
			for j := i + 1; j < len(rs); j++ {
				if rs[i].Overlaps(rs[j]) && 3*area(rs[i].Union(rs[j])) <= 4*(area(rs[i])+area(rs[j])) {
					rs[i] = rs[i].Union(rs[j])
					rs = append(rs[:j], rs[j+1:]...)
					changed = true
					break
				}
			}
		}
	}
	return rs
}

// callPixels is what one detector call costs beyond its pixels, in
// pixels: a call's own time on one thread divided by the time a pixel
// takes (measured: docs/benchmarks/figures-from-code-comments.md).
const callPixels = 5000

// coverCost is what searching r costs, in pixels (callPixels a call).
func coverCost(r, frame image.Rectangle) int {
	n := 0
	for _, c := range cover(r, frame) {
		n += c.Dx()*c.Dy() + callPixels
	}
	return n
}

// maxJoined is the most regions joinCheaper tries to join: pairs are
// tried again after every join, so its cost grows with the cube of their
// number (a noisy night picture can give hundreds of small blobs, whose
// crops then mostly add up to a whole-frame search anyway).
const maxJoined = 32

// joinCheaper clips rs to the frame, drops those outside it, and joins two
// regions wherever the crops of the box around both cost no more than
// those of each: two pieces of one walking figure (its head and its feet,
// where the picture changed) in one 224-px square instead of two 160-px
// ones.
func joinCheaper(rs []image.Rectangle, frame image.Rectangle) []image.Rectangle {
	for i := range rs {
		rs[i] = rs[i].Intersect(frame)
	}
	rs = slices.DeleteFunc(rs, image.Rectangle.Empty)
	if len(rs) > maxJoined {
		return rs
	}
	cost := make([]int, len(rs))
	for i, r := range rs {
		cost[i] = coverCost(r, frame)
	}
	for changed := true; changed; {
		changed = false
		for i := 0; i < len(rs) && !changed; i++ {
			for j := i + 1; j < len(rs); j++ {
				u := rs[i].Union(rs[j])
				if c := coverCost(u, frame); c <= cost[i]+cost[j] {
					rs[i], cost[i] = u, c
					rs = slices.Delete(rs, j, j+1)
					cost = slices.Delete(cost, j, j+1)
					changed = true
					break
				}
			}
		}
	}
	return rs
}

// square is the side x side square centred on r, moved inside frame
// (which is at least side wide and high).
func square(r image.Rectangle, side int, frame image.Rectangle) image.Rectangle {
	cx, cy := (r.Min.X+r.Max.X)/2, (r.Min.Y+r.Max.Y)/2
	x0 := min(max(cx-side/2, 0), frame.Dx()-side)
	y0 := min(max(cy-side/2, 0), frame.Dy()-side)
	return image.Rect(x0, y0, x0+side, y0+side)
}

// cropInto copies the pixels of c (inside img) into dst, which holds
// exactly c's pixels.
func cropInto(dst []byte, img Image, c image.Rectangle) {
	row := 3 * c.Dx()
	for y := 0; y < c.Dy(); y++ {
		o := ((c.Min.Y+y)*img.Width + c.Min.X) * 3
		copy(dst[y*row:(y+1)*row], img.Pix[o:o+row])
	}
}
