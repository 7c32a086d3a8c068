package counter

import (
	"image"
	"math"
)

// track follows one moving blob. Its id lives only inside the tracker, for
// the few seconds the person is in view; it is never emitted.
type track struct {
	id         int
	kf         kalman // anchor (bottom centre) position and velocity
	w, h       float64
	hits       int
	score      float64 // the detector's confidence, smoothed over the boxes matched (detector method)
	misses     int
	confirmed  bool
	sides      []int // last definite side of each line, 0 when unknown
	lastAnchor vec
	sized      bool // w and h are from a box the picture's edge did not cut
	born       vec  // where it was first seen
	bornStep   int  // the tracker's step when it was first seen
	walked     bool // it has moved at least its own height from there
	from       *vec // where it came from, beyond the picture's edge; nil if it appeared inside
}

func (t *track) anchor() vec { return vec{t.kf.x[0], t.kf.x[1]} }

// tracker is SORT-like: a constant-velocity Kalman filter per track and
// optimal (Hungarian) assignment of detections to predicted tracks, gated
// by distance relative to the person's height.
type tracker struct {
	maxAge, minHits int
	nextID          int
	tracks          []*track
	graves          []grave
	frame           int
	lines           int
}

// grave remembers where a confirmed track was lost and which side of each
// line it was on. A new track starting there soon after inherits the sides,
// so an id switch (the usual cause of double counts) does not count the
// same person again.
type grave struct {
	at    vec
	h     float64
	sides []int
	frame int
}

func newTracker(maxAge, minHits, lines int) *tracker {
	return &tracker{maxAge: maxAge, minHits: minHits, lines: lines}
}

// update advances every track one frame with this frame's detections and
// returns the confirmed tracks.
func (tr *tracker) update(dets []image.Rectangle) []*track {
	tr.frame++
	for _, t := range tr.tracks {
		t.lastAnchor = t.anchor()
		t.kf.predict()
	}
	// Cost: distance between predicted and detected anchors in units of
	// the track's height; pairs further than one height apart never match.
	const gate = 1.0
	cost := make([][]float64, len(tr.tracks))
	for i, t := range tr.tracks {
		cost[i] = make([]float64, len(dets))
		p := t.anchor()
		scale := math.Max(t.h, 20)
		for j, d := range dets {
			a := anchorOf(d)
			c := math.Hypot(a.x-p.x, a.y-p.y) / scale
			// A size change costs too, so a blob of two people is not
			// taken for one person who grew.
			c += 0.5 * math.Abs(math.Log(math.Max(float64(d.Dy()), 1)/math.Max(t.h, 1)))
			if c > gate {
				c = math.Inf(1)
			}
			cost[i][j] = c
		}
	}
	assign := hungarian(cost)
	usedDet := make([]bool, len(dets))
	for i, j := range assign {
		t := tr.tracks[i]
		if j < 0 {
			t.misses++
			continue
		}
		usedDet[j] = true
		d := dets[j]
		a := anchorOf(d)
		t.kf.correct(a.x, a.y)
		t.w = 0.7*t.w + 0.3*float64(d.Dx())
		t.h = 0.7*t.h + 0.3*float64(d.Dy())
		t.hits++
		t.misses = 0
		if t.hits >= tr.minHits {
			t.confirmed = true
		}
	}
	// Retire lost tracks, remembering where confirmed ones went.
	kept := tr.tracks[:0]
	for _, t := range tr.tracks {
		if t.misses > tr.maxAge {
			if t.confirmed {
				tr.graves = append(tr.graves, grave{at: t.anchor(), h: t.h, sides: t.sides, frame: tr.frame})
			}
			continue
		}
		kept = append(kept, t)
	}
	tr.tracks = kept
	graves := tr.graves[:0]
	for _, g := range tr.graves {
		if tr.frame-g.frame <= 2*tr.maxAge {
			graves = append(graves, g)
		}
	}
	tr.graves = graves
	for j, d := range dets {
		if usedDet[j] {
			continue
		}
		a := anchorOf(d)
		t := &track{id: tr.nextID, kf: newKalman(a.x, a.y), w: float64(d.Dx()), h: float64(d.Dy()),
			hits: 1, sides: make([]int, tr.lines), lastAnchor: a}
		tr.nextID++
		if tr.minHits <= 1 {
			t.confirmed = true
		}
		inheritSides(&tr.graves, t)
		tr.tracks = append(tr.tracks, t)
	}
	var out []*track
	for _, t := range tr.tracks {
		if t.confirmed && t.misses == 0 {
			out = append(out, t)
		}
	}
	return out
}

// inheritSides gives a new track the line sides of the nearest recent
// grave within one body height, and buries it.
func inheritSides(graves *[]grave, t *track) {
	best, bestD := -1, math.Inf(1)
	a := t.anchor()
	for i, g := range *graves {
		d := math.Hypot(g.at.x-a.x, g.at.y-a.y)
		if d <= math.Max(g.h, t.h) && d < bestD {
			best, bestD = i, d
		}
	}
	if best < 0 {
		return
	}
	copy(t.sides, (*graves)[best].sides)
	*graves = append((*graves)[:best], (*graves)[best+1:]...)
}

func anchorOf(r image.Rectangle) vec {
	return vec{float64(r.Min.X+r.Max.X) / 2, float64(r.Max.Y)}
}

// kalman is a constant-velocity filter on a 2-D point: state (x, y, vx,
// vy), observation (x, y), one frame per step.
type kalman struct {
	x    [4]float64
	p    [4][4]float64
	q, r float64 // process and measurement noise; kfQ and kfR unless set
}

const (
	kfQ = 4.0  // process noise (pixels^2 per frame)
	kfR = 16.0 // measurement noise (pixels^2): blob anchors jitter
)

func newKalman(x, y float64) kalman {
	k := kalman{x: [4]float64{x, y, 0, 0}, q: kfQ, r: kfR}
	k.p[0][0], k.p[1][1] = kfR, kfR
	k.p[2][2], k.p[3][3] = 100, 100 // unknown speed
	return k
}

func (k *kalman) predict() {
	// x' = F x with F = [[1,0,1,0],[0,1,0,1],[0,0,1,0],[0,0,0,1]].
	k.x[0] += k.x[2]
	k.x[1] += k.x[3]
	var fp [4][4]float64
	for j := 0; j < 4; j++ {
		fp[0][j] = k.p[0][j] + k.p[2][j]
		fp[1][j] = k.p[1][j] + k.p[3][j]
		fp[2][j] = k.p[2][j]
		fp[3][j] = k.p[3][j]
	}
	for i := 0; i < 4; i++ {
		k.p[i][0] = fp[i][0] + fp[i][2]
		k.p[i][1] = fp[i][1] + fp[i][3]
		k.p[i][2] = fp[i][2]
		k.p[i][3] = fp[i][3]
	}
	for i := 0; i < 4; i++ {
		k.p[i][i] += k.q
	}
}

func (k *kalman) correct(zx, zy float64) {
	// H selects (x, y); S = H P H' + R is 2x2.
	s00, s01 := k.p[0][0]+k.r, k.p[0][1]
	s10, s11 := k.p[1][0], k.p[1][1]+k.r
	det := s00*s11 - s01*s10
	if det == 0 {
		return
	}
	i00, i01, i10, i11 := s11/det, -s01/det, -s10/det, s00/det
	var g [4][2]float64 // K = P H' S^-1
	for r := 0; r < 4; r++ {
		g[r][0] = k.p[r][0]*i00 + k.p[r][1]*i10
		g[r][1] = k.p[r][0]*i01 + k.p[r][1]*i11
	}
	yx, yy := zx-k.x[0], zy-k.x[1]
	for r := 0; r < 4; r++ {
		k.x[r] += g[r][0]*yx + g[r][1]*yy
	}
	var np [4][4]float64 // P = (I - K H) P
	for r := 0; r < 4; r++ {
		for c := 0; c < 4; c++ {
			np[r][c] = k.p[r][c] - g[r][0]*k.p[0][c] - g[r][1]*k.p[1][c]
		}
	}
	k.p = np
}
