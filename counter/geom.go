package counter

import "math"

// vec is a position or offset in frame pixels.
type vec struct{ x, y float64 }

// pixLine is a configured line in pixels, with the normal that points to
// its "right" (larger x; for a horizontal line, larger y) side.
type pixLine struct {
	id      string
	a, b    vec
	nx, ny  float64 // unit normal towards the right side
	length  float64
	band    float64 // hysteresis half-width in pixels
	inIsLTR bool
}

func newPixLine(l Line, w, h int, hysteresis float64) pixLine {
	a := vec{l.From[0] * float64(w), l.From[1] * float64(h)}
	b := vec{l.To[0] * float64(w), l.To[1] * float64(h)}
	dx, dy := b.x-a.x, b.y-a.y
	length := math.Hypot(dx, dy)
	nx, ny := -dy/length, dx/length
	if nx < 0 || (nx == 0 && ny < 0) {
		nx, ny = -nx, -ny
	}
	pl := pixLine{id: l.ID, a: a, b: b, nx: nx, ny: ny, length: length,
		band: hysteresis * math.Hypot(float64(w), float64(h))}
	pl.inIsLTR, _ = l.inIsRight()
	return pl
}

// side is -1 left of the band, +1 right of it, 0 inside it.
func (l pixLine) side(p vec) int {
	d := (p.x-l.a.x)*l.nx + (p.y-l.a.y)*l.ny
	switch {
	case d > l.band:
		return 1
	case d < -l.band:
		return -1
	}
	return 0
}

// within reports whether p projects onto the segment (with a margin of one
// band at each end), so that walking past the end of a line is no
// crossing.
func (l pixLine) within(p vec) bool {
	t := ((p.x-l.a.x)*(l.b.x-l.a.x) + (p.y-l.a.y)*(l.b.y-l.a.y)) / l.length
	return t >= -l.band && t <= l.length+l.band
}

// pixZone is a zone polygon in pixels.
type pixZone struct {
	id       string
	poly     []vec
	capacity int
}

func newPixZone(z Zone, w, h int) pixZone {
	poly := make([]vec, len(z.Polygon))
	for i, p := range z.Polygon {
		poly[i] = vec{p[0] * float64(w), p[1] * float64(h)}
	}
	return pixZone{id: z.ID, poly: poly, capacity: z.Capacity}
}

// contains is the even-odd rule.
func (z pixZone) contains(p vec) bool {
	in := false
	for i, j := 0, len(z.poly)-1; i < len(z.poly); j, i = i, i+1 {
		a, b := z.poly[i], z.poly[j]
		if (a.y > p.y) != (b.y > p.y) && p.x < (b.x-a.x)*(p.y-a.y)/(b.y-a.y)+a.x {
			in = !in
		}
	}
	return in
}
