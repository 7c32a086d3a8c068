package blur

import "image"

// holder keeps face boxes alive for a few frames after their last detection,
// so that one missed frame (motion blur, a turned head, a detector hiccup)
// does not reveal a face. A held box moves with the velocity it last had and
// grows with every frame it is held, since the longer a face goes unseen the
// less sure we are where it is.
type holder struct {
	frames int     // how many frames a box outlives its last detection
	grow   float64 // growth of a held box per frame, as a fraction of its size
	boxes  []held
}

type held struct {
	box    image.Rectangle
	vx, vy float64 // centre motion in pixels per frame
	age    int     // frames since last detection
}

// update takes this frame's detections and returns every region to obscure:
// the detections themselves plus the held boxes that were not re-detected.
func (h *holder) update(dets []image.Rectangle) []image.Rectangle {
	next := make([]held, 0, len(dets)+len(h.boxes))
	used := make([]bool, len(h.boxes))
	for _, d := range dets {
		nb := held{box: d}
		if j := h.match(d, used); j >= 0 {
			used[j] = true
			prev := h.boxes[j]
			steps := float64(prev.age + 1)
			cx, cy := centre(d)
			px, py := centre(prev.box)
			nb.vx, nb.vy = (cx-px)/steps, (cy-py)/steps
		}
		next = append(next, nb)
	}
	out := make([]image.Rectangle, 0, len(dets)+len(h.boxes))
	out = append(out, dets...)
	for j, b := range h.boxes {
		if used[j] || b.age+1 > h.frames {
			continue
		}
		b.age++
		b.box = b.box.Add(image.Pt(int(b.vx+0.5*sign(b.vx)), int(b.vy+0.5*sign(b.vy))))
		next = append(next, b)
		out = append(out, h.predicted(b))
	}
	h.boxes = next
	return out
}

// miss is called for a frame with no detector answer: every box ages and
// stays obscured (the whole frame is obscured anyway).
func (h *holder) miss() {
	kept := h.boxes[:0]
	for _, b := range h.boxes {
		b.age++
		if b.age <= h.frames {
			b.box = b.box.Add(image.Pt(int(b.vx), int(b.vy)))
			kept = append(kept, b)
		}
	}
	h.boxes = kept
}

// predicted is a held box grown for its age and for its speed.
func (h *holder) predicted(b held) image.Rectangle {
	g := h.grow * float64(b.age)
	dx := int(float64(b.box.Dx())*g+abs(b.vx)*float64(b.age)) + 1
	dy := int(float64(b.box.Dy())*g+abs(b.vy)*float64(b.age)) + 1
	return image.Rect(b.box.Min.X-dx, b.box.Min.Y-dy, b.box.Max.X+dx, b.box.Max.Y+dy)
}

// match finds the held box that d most likely continues: the nearest
// unused one whose centre is within a box size of d's centre.
func (h *holder) match(d image.Rectangle, used []bool) int {
	best, bestDist := -1, 0.0
	cx, cy := centre(d)
	for j, b := range h.boxes {
		if used[j] {
			continue
		}
		bx, by := centre(b.box)
		reach := float64(max(b.box.Dx(), b.box.Dy(), d.Dx(), d.Dy())) * (1 + float64(b.age))
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

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}
