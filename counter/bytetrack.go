package counter

import (
	"image"
	"math"
	"time"

	"github.com/veilproject/veil/blur"
)

// byteTracker follows people found by a detector, in the manner of
// ByteTrack (Zhang et al. 2022): confident boxes are matched to every
// track first, then the weak ones (a person half hidden by a companion,
// blurred by motion) are matched to the tracks still unmatched that were
// seen last time, instead of being thrown away. Motion is a
// constant-velocity Kalman filter on the feet point, stepped once per
// detection interval.
//
// The anchor is the feet (the bottom centre of the box). A box cut by the
// picture's edge does not show the feet (or the body's centre): once a
// track has been seen whole, its anchor is put where its known size says
// the feet are, so walking out of the picture neither stops the anchor at
// the edge nor moves it back, and a clipped box makes or undoes no
// crossing by its clipping alone. A box much shorter than the person is
// taken the same way. A track born at the edge starts on the far side of
// it.
type byteTracker struct {
	high, low float64 // score thresholds: confident boxes (which alone start tracks), and the least kept
	minHits   int     // detections that confirm a new track
	maxLost   int     // intervals a confirmed track is kept unseen
	stillAge  int     // intervals after which a track that never walked must be confidently seen to count
	nextID    int
	tracks    []*track
	graves    []grave
	step      int
	lines     int
	w, h      int
	q, r      float64
	sizes     sizeModel
}

// sizeModel learns how tall a person is at each height in the picture (a
// fixed camera's perspective: h = a + b*y, least squares on the feet's y),
// from tracks that have walked at least their own height: something the
// detector mistakes for a person, such as a post or a cone, never walks,
// so it does not teach the model, and once the model knows the scene a
// track far smaller than a person where it stands is not counted.
type sizeModel struct {
	n, tracks        int
	sy, sh, syy, syh float64
}

func (m *sizeModel) add(y, h float64) {
	m.n++
	m.sy += y
	m.sh += h
	m.syy += y * y
	m.syh += y * h
}

// expect is the height of a person whose feet are at y, and whether the
// model has seen enough people (several tracks, many boxes) to say.
func (m *sizeModel) expect(y float64) (float64, bool) {
	if m.tracks < 3 || m.n < 30 {
		return 0, false
	}
	n := float64(m.n)
	den := n*m.syy - m.sy*m.sy
	if den <= 1e-9*n*m.syy { // every sample at one height
		return m.sh / n, true
	}
	b := (n*m.syh - m.sy*m.sh) / den
	return (m.sh-b*m.sy)/n + b*y, true
}

// plausible says whether t is the size of a person where it stands: at
// least half of it, once the model can say. A track seen only cut by the
// picture's edge is given the benefit of the doubt.
func (bt *byteTracker) plausible(t *track) bool {
	want, ok := bt.sizes.expect(t.anchor().y)
	return !ok || !t.sized || t.h >= 0.5*want
}

// stillScore is the smoothed confidence that a track which has stood since
// it was first seen must keep to be counted present. NanoDet scores a
// person in plain sight 0.6-0.9, standing or walking; things it takes for a
// person frame after frame (a sign post, a cone, a tripod, a bollard) score
// 0.2-0.5 and never walk. A person standing half hidden from the start is
// the price: they count once they have walked.
const stillScore = 0.5

// sureScore is the score at which a track counts as present from its first
// detection, before it is confirmed.
const sureScore = 0.6

// stillFor is how long a track may stand without ever walking before it
// must be confidently seen to be counted present.
const stillFor = 2 * time.Second

// stillThing says whether t is more likely a thing than a person standing
// still: it has been followed for a while (stillAge detections) without
// ever walking, and the detector has never been sure of it.
func (bt *byteTracker) stillThing(t *track) bool {
	return !t.walked && bt.step-t.bornStep >= bt.stillAge && t.score < stillScore
}

func newByteTracker(w, h, lines, minHits, maxLost, stillAge int) *byteTracker {
	// Noise is a share of the picture's height, so that it means the same
	// at any size: a detector's feet are sharper than a walker's change of
	// pace between two detections.
	q, r := sq(0.02*float64(h)), sq(0.01*float64(h))
	return &byteTracker{high: 0.35, low: 0.15, minHits: minHits, maxLost: maxLost, stillAge: stillAge, lines: lines, w: w, h: h, q: q, r: r}
}

func sq(v float64) float64 { return v * v }

// clipped says which of a box's sides touch the picture's edge.
type clipped struct{ left, right, bottom bool }

func (bt *byteTracker) clip(b image.Rectangle) clipped {
	const m = 2 // pixels: boxes are clamped to the picture
	return clipped{left: b.Min.X <= m, right: b.Max.X >= bt.w-m, bottom: b.Max.Y >= bt.h-m}
}

// anchorFor is d's feet point for track t (nil: a new track).
func (bt *byteTracker) anchorFor(d image.Rectangle, t *track) vec {
	a := anchorOf(d)
	if t == nil || !t.sized {
		return a
	}
	c := bt.clip(d)
	if c.bottom {
		a.y = math.Max(a.y, float64(d.Min.Y)+t.h)
	} else if float64(d.Dy()) < 0.75*t.h {
		// A box much shorter than the person is part of them (legs hidden
		// by a companion or smeared by motion, or the head cut off): the
		// feet are at its bottom or a body's height below its top,
		// whichever is nearer where they were heading.
		p := t.anchor()
		if alt := float64(d.Min.Y) + t.h; math.Abs(alt-p.y) < math.Abs(a.y-p.y) {
			a.y = alt
		}
	}
	switch {
	case c.left && !c.right:
		a.x = math.Min(a.x, float64(d.Max.X)-t.w/2)
	case c.right && !c.left:
		a.x = math.Max(a.x, float64(d.Min.X)+t.w/2)
	}
	return a
}

// cost of matching track t (predicted) with box d: 1 - IoU of d with the
// box t predicts, plus how far the feet are apart in heights; +Inf beyond
// the gate (the boxes must overlap, or the feet be within half a height).
func (bt *byteTracker) cost(t *track, d image.Rectangle, gate float64) float64 {
	p := t.anchor()
	pred := t.box()
	a := bt.anchorFor(d, t)
	dist := math.Hypot(a.x-p.x, a.y-p.y) / math.Max(t.h, 10)
	o := blur.IoU(pred, d)
	if o < 0.1 && dist > gate {
		return math.Inf(1)
	}
	return 1 - o + 0.5*dist
}

// update advances the tracks by steps detection intervals (more than one
// after a detection was skipped) and takes this interval's boxes. It
// returns the confirmed tracks seen now.
func (bt *byteTracker) update(dets []blur.Detection, steps int) []*track {
	bt.step += steps
	for _, t := range bt.tracks {
		t.lastAnchor = t.anchor()
		for range min(steps, 5) {
			t.kf.predict()
		}
	}
	var high, low []image.Rectangle
	var highScore, lowScore []float64
	for _, d := range dets {
		switch s := float64(d.Score); {
		case s >= bt.high:
			high, highScore = append(high, d.Box), append(highScore, s)
		case s >= bt.low:
			low, lowScore = append(low, d.Box), append(lowScore, s)
		}
	}
	matched := make([]bool, len(bt.tracks))
	// First, confident boxes against every track.
	all := make([]int, len(bt.tracks))
	for i := range all {
		all[i] = i
	}
	usedHigh := bt.match(all, high, highScore, matched, 0.75)
	// Then weak boxes against the tracks seen last time and still free.
	var recent []int
	for i, t := range bt.tracks {
		if !matched[i] && t.misses == 0 && t.confirmed {
			recent = append(recent, i)
		}
	}
	bt.match(recent, low, lowScore, matched, 0.4)
	kept := bt.tracks[:0]
	for i, t := range bt.tracks {
		switch {
		case matched[i]:
			kept = append(kept, t)
		case !t.confirmed: // a tentative track missed once was noise
		case t.misses+1 > bt.maxLost:
			bt.graves = append(bt.graves, grave{at: t.anchor(), h: t.h, sides: t.sides, frame: bt.step})
		default:
			t.misses++
			kept = append(kept, t)
		}
	}
	bt.tracks = kept
	graves := bt.graves[:0]
	for _, g := range bt.graves {
		if bt.step-g.frame <= bt.maxLost {
			graves = append(graves, g)
		}
	}
	bt.graves = graves
	var seen []image.Rectangle // boxes taken by tracks, and of tracks started, this interval
	for j, d := range high {
		if usedHigh[j] {
			seen = append(seen, d)
		}
	}
	for j, d := range high {
		if usedHigh[j] || mostlyInside(d, seen) {
			continue
		}
		seen = append(seen, d)
		a := anchorOf(d)
		t := &track{id: bt.nextID, kf: newKalman(a.x, a.y), w: float64(d.Dx()), h: float64(d.Dy()),
			hits: 1, score: highScore[j], bornStep: bt.step, sides: make([]int, bt.lines), lastAnchor: a, born: a}
		t.kf.q, t.kf.r = bt.q, bt.r
		t.kf.p[0][0], t.kf.p[1][1] = bt.r, bt.r
		t.kf.p[2][2], t.kf.p[3][3] = sq(0.1*float64(bt.h)), sq(0.1*float64(bt.h))
		c := bt.clip(d)
		t.sized = !c.left && !c.right && !c.bottom
		// A track that first appears cut by the picture's edge came in
		// through it: its sides start from beyond that edge, so walking in
		// over a line close to the edge is a crossing even though its
		// first box already straddles the line.
		switch {
		case c.left && !c.right:
			t.from = &vec{-1, a.y}
		case c.right && !c.left:
			t.from = &vec{float64(bt.w) + 1, a.y}
		case c.bottom:
			t.from = &vec{a.x, float64(bt.h) + 1}
		}
		bt.nextID++
		t.confirmed = bt.minHits <= 1
		inheritSides(&bt.graves, t)
		bt.tracks = append(bt.tracks, t)
	}
	var out []*track
	for _, t := range bt.tracks {
		if t.confirmed && t.misses == 0 && bt.plausible(t) {
			out = append(out, t)
		}
	}
	return out
}

// mostlyInside says whether most of b lies inside one of boxes: the
// detector's second box for a person already followed (their legs, their
// upper body), not a person of their own.
func mostlyInside(b image.Rectangle, boxes []image.Rectangle) bool {
	for _, o := range boxes {
		in := b.Intersect(o)
		if !in.Empty() && float64(in.Dx()*in.Dy()) >= 0.7*float64(b.Dx()*b.Dy()) {
			return true
		}
	}
	return false
}

// match assigns boxes to the tracks at idx (optimally, by cost within
// gate), updates the matched tracks and marks them; it returns which boxes
// were taken.
func (bt *byteTracker) match(idx []int, boxes []image.Rectangle, scores []float64, matched []bool, gate float64) []bool {
	used := make([]bool, len(boxes))
	if len(idx) == 0 || len(boxes) == 0 {
		return used
	}
	cost := make([][]float64, len(idx))
	for i, ti := range idx {
		cost[i] = make([]float64, len(boxes))
		for j, d := range boxes {
			cost[i][j] = bt.cost(bt.tracks[ti], d, gate)
		}
	}
	for i, j := range hungarian(cost) {
		if j < 0 {
			continue
		}
		t := bt.tracks[idx[i]]
		d := boxes[j]
		used[j], matched[idx[i]] = true, true
		a := bt.anchorFor(d, t)
		t.kf.correct(a.x, a.y)
		// The feet are where the detector put them; the filter keeps the
		// velocity, for the next prediction.
		t.kf.x[0], t.kf.x[1] = a.x, a.y
		if c := bt.clip(d); !c.left && !c.right && !c.bottom {
			if t.sized {
				t.w = 0.6*t.w + 0.4*float64(d.Dx())
				t.h = 0.6*t.h + 0.4*float64(d.Dy())
			} else {
				t.w, t.h, t.sized = float64(d.Dx()), float64(d.Dy()), true
			}
		}
		if !t.walked && math.Hypot(a.x-t.born.x, a.y-t.born.y) > t.h {
			t.walked = true
			bt.sizes.tracks++
		}
		// Only a box of someone walking now teaches the model: a thing
		// that stands still for good adds nothing, even if its track
		// once moved (taken over from a passer-by).
		if step := math.Hypot(a.x-t.lastAnchor.x, a.y-t.lastAnchor.y); t.walked && t.sized && step > 0.1*t.h && !bt.clip(d).bottom {
			bt.sizes.add(a.y, float64(d.Dy()))
		}
		t.score = 0.7*t.score + 0.3*scores[j]
		t.hits++
		t.misses = 0
		if t.hits >= bt.minHits {
			t.confirmed = true
		}
	}
	return used
}

// present is the people counted as in the picture: the confirmed tracks
// seen now, and those missed for at most within intervals (a person
// missed by a detection or two is still there) unless where they are
// predicted to be overlaps someone seen now (the same person, found again
// as a new track).
func (bt *byteTracker) present(within int) []*track {
	var out []*track
	var now []image.Rectangle
	for _, t := range bt.tracks {
		// A new track counts at once if the detector is sure of it: the
		// median over detections takes out a one-off.
		if (t.confirmed || t.score >= sureScore) && t.misses == 0 && bt.plausible(t) && !bt.stillThing(t) {
			out = append(out, t)
			now = append(now, t.box())
		}
	}
	// Two tracks on one person (the whole body and a part of it, found in
	// turn) count once: a box lying almost wholly inside another's.
	keep := out[:0]
	var kept []image.Rectangle
	for i, t := range out {
		if !insideAnother(i, now, 0.75) {
			keep = append(keep, t)
			kept = append(kept, now[i])
		}
	}
	out, now = keep, kept
	for _, t := range bt.tracks {
		if t.confirmed && t.misses > 0 && t.misses <= within && bt.plausible(t) && !bt.stillThing(t) && !overlapsAny(t.box(), now) {
			out = append(out, t)
		}
	}
	return out
}

func (t *track) box() image.Rectangle {
	a := t.anchor()
	return image.Rect(int(a.x-t.w/2), int(a.y-t.h), int(a.x+t.w/2), int(a.y))
}

func overlapsAny(b image.Rectangle, boxes []image.Rectangle) bool {
	for _, o := range boxes {
		if blur.IoU(b, o) > 0.3 {
			return true
		}
	}
	return mostlyInside(b, boxes)
}

// insideAnother says whether at least share of boxes[i] lies inside one of
// the other boxes (the smaller of two such boxes; the first of two equal).
func insideAnother(i int, boxes []image.Rectangle, share float64) bool {
	b := boxes[i]
	area := float64(b.Dx() * b.Dy())
	for j, o := range boxes {
		if j == i {
			continue
		}
		in := b.Intersect(o)
		oa := float64(o.Dx() * o.Dy())
		if !in.Empty() && float64(in.Dx()*in.Dy()) >= share*area && (area < oa || area == oa && j < i) {
			return true
		}
	}
	return false
}
