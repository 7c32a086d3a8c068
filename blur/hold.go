package blur

import (
	"image"
	"math"
	"time"
)

// holder keeps face boxes alive for a while after their last detection, so
// that a missed frame (motion blur, a turned head, a detector hiccup) does
// not reveal a face, and so that a face that stays still between two
// full-frame sweeps stays obscured until the next sweep finds it again.
// Holding is by stream time, not by frames: frames that failed closed or
// were dropped do not age a box. A held box moves with the velocity it
// last had and grows with the time it is held and with its speed, since
// the longer a face goes unseen the less sure we are where it is.
type holder struct {
	hold  time.Duration // how long a box outlives its last detection; <= 0 disables
	grow  float64       // growth of a held box per second, as a fraction of its size
	boxes []held
}

// maxSpeed caps a held face's speed, in face widths per second.
const maxSpeed = 8

type held struct {
	box    image.Rectangle // where it was last detected
	at     time.Duration   // when (stream time)
	vx, vy float64         // centre motion in pixels per second
}

// update takes the detections of the frame at now and returns every region
// to obscure: the detections themselves plus the held boxes that were not
// re-detected, where they are predicted to be now.
func (h *holder) update(dets []image.Rectangle, now time.Duration) []image.Rectangle {
	if h.hold <= 0 {
		return dets
	}
	next := make([]held, 0, len(dets)+len(h.boxes))
	used := make([]bool, len(h.boxes))
	for _, d := range dets {
		nb := held{box: d, at: now}
		if j := h.match(d, now, used); j >= 0 {
			used[j] = true
			prev := h.boxes[j]
			if dt := (now - prev.at).Seconds(); dt > 0 {
				cx, cy := centre(d)
				px, py := centre(prev.box)
				// Box jitter over one frame interval reads as a high
				// speed: smooth over successive matches, and cap at
				// maxSpeed face widths a second (a walking person's face
				// seen close up moves about that fast).
				vx, vy := (cx-px)/dt, (cy-py)/dt
				if prev.vx != 0 || prev.vy != 0 {
					vx, vy = (vx+prev.vx)/2, (vy+prev.vy)/2
				}
				lim := maxSpeed * float64(max(d.Dx(), d.Dy()))
				nb.vx, nb.vy = max(-lim, min(lim, vx)), max(-lim, min(lim, vy))
			}
		}
		next = append(next, nb)
	}
	out := make([]image.Rectangle, 0, len(dets)+len(h.boxes))
	out = append(out, dets...)
	for j, b := range h.boxes {
		if used[j] || now-b.at > h.hold || now < b.at {
			continue
		}
		p := h.predicted(b, now)
		if covered(p, dets) {
			// A fresh detection is this face (the match went to another
			// held box of it): keeping both would predict one face twice.
			continue
		}
		next = append(next, b)
		out = append(out, p)
	}
	h.boxes = next
	return out
}

// rescale moves the held boxes from pictures of size from to pictures of
// size to (the camera changed its resolution): a face held at the old size
// stays obscured where it is in the new picture.
func (h *holder) rescale(from, to image.Point) {
	if from.X <= 0 || from.Y <= 0 {
		return
	}
	sx, sy := float64(to.X)/float64(from.X), float64(to.Y)/float64(from.Y)
	for i := range h.boxes {
		b := &h.boxes[i]
		r := b.box
		// Outward rounding: a scaled box never loses a pixel of the face.
		b.box = image.Rect(int(math.Floor(float64(r.Min.X)*sx)), int(math.Floor(float64(r.Min.Y)*sy)),
			int(math.Ceil(float64(r.Max.X)*sx)), int(math.Ceil(float64(r.Max.Y)*sy)))
		b.vx, b.vy = b.vx*sx, b.vy*sy
	}
}

// covered reports whether a detection overlaps p by at least half of the
// smaller of the two: the same face, seen again.
func covered(p image.Rectangle, dets []image.Rectangle) bool {
	for _, d := range dets {
		in := p.Intersect(d)
		if in.Empty() {
			continue
		}
		if 2*in.Dx()*in.Dy() >= min(p.Dx()*p.Dy(), d.Dx()*d.Dy()) {
			return true
		}
	}
	return false
}

// moving reports whether a held box moves faster than a few pixels a
// second (a face walking, not one sitting still).
func (b held) moving() bool { return abs(b.vx)+abs(b.vy) > 8 }

// predicted is a held box moved by its velocity and grown for its age and
// speed.
func (h *holder) predicted(b held, now time.Duration) image.Rectangle {
	dt := (now - b.at).Seconds()
	r := b.box.Add(image.Pt(int(b.vx*dt), int(b.vy*dt)))
	g := h.grow * dt
	dx := int(float64(r.Dx())*g+abs(b.vx)*dt*0.5) + 1
	dy := int(float64(r.Dy())*g+abs(b.vy)*dt*0.5) + 1
	return image.Rect(r.Min.X-dx, r.Min.Y-dy, r.Max.X+dx, r.Max.Y+dy)
}

// match finds the held box that d most likely continues: the nearest
// unused one whose predicted centre is within a box size of d's centre.
func (h *holder) match(d image.Rectangle, now time.Duration, used []bool) int {
	best, bestDist := -1, 0.0
	cx, cy := centre(d)
	for j, b := range h.boxes {
		if used[j] {
			continue
		}
		p := h.predicted(b, now)
		bx, by := centre(p)
		reach := float64(max(p.Dx(), p.Dy(), d.Dx(), d.Dy()))
		dist := (cx-bx)*(cx-bx) + (cy-by)*(cy-by)
		if dist <= reach*reach && (best < 0 || dist < bestDist) {
			best, bestDist = j, dist
		}
	}
	return best
}

func centre(r image.Rectangle) (float64, float64) {
	return float64(r.Min.X+r.Max.X) / 2, float64(r.Min.Y+r.Max.Y) / 2
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
