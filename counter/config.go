package counter

import (
	"fmt"

	"github.com/veilproject/veil/footfall"
	"math"
	"time"
)

// Point is a position in normalized frame coordinates: x to the right and y
// down, both in [0, 1], so a configuration does not depend on resolution.
type Point [2]float64

// Line is a counting line. A person is counted when the bottom centre of
// their box moves from one side of the line to the other, past a
// hysteresis band, within the segment's extent.
type Line struct {
	// ID names the line in events and metrics (e.g. "door").
	ID string `yaml:"id"`
	// From and To are the segment's ends.
	From Point `yaml:"from"`
	To   Point `yaml:"to"`
	// In is the direction, on screen, that counts as an entry: up, down,
	// left or right (or the arrows ↑ ↓ ← →), whichever way the line is
	// drawn. down is crossing towards the bottom of the picture, and so on;
	// the line must not run along the direction (down across a vertical
	// line means nothing). The older names still work: left_to_right is
	// moving to the line's side with larger x, or for a horizontal line
	// larger y (so, downwards); right_to_left the opposite. It defaults to
	// left_to_right.
	In string `yaml:"in"`
}

// Zone is an area whose occupancy is reported.
type Zone struct {
	// ID names the zone in events and metrics.
	ID string `yaml:"id"`
	// Polygon is the zone's outline, at least 3 points.
	Polygon []Point `yaml:"polygon"`
	// Capacity is the most people the zone should hold; 0 means no limit.
	Capacity int `yaml:"capacity"`
}

// Direction values for Line.In.
const (
	LeftToRight = "left_to_right"
	RightToLeft = "right_to_left"
	Up          = "up"
	Down        = "down"
	Left        = "left"
	Right       = "right"
)

// screenDirs are the on-screen directions, and their arrows.
var screenDirs = map[string][2]float64{
	Up: {0, -1}, Down: {0, 1}, Left: {-1, 0}, Right: {1, 0},
	"↑": {0, -1}, "↓": {0, 1}, "←": {-1, 0}, "→": {1, 0},
}

// Methods of finding people.
const (
	MethodDetector = "detector"
	MethodMotion   = "motion"
)

// inIsRight says whether crossing to the line's right side (its normal's,
// as pixLine orients it: larger x, or larger y for a horizontal line) is
// an entry; ok is false when In is unknown or runs along the line.
// Normalized coordinates keep the signs that pixels have.
func (l Line) inIsRight() (right, ok bool) {
	switch l.In {
	case LeftToRight:
		return true, true
	case RightToLeft:
		return false, true
	}
	d, known := screenDirs[l.In]
	if !known {
		return false, false
	}
	dx, dy := l.To[0]-l.From[0], l.To[1]-l.From[1]
	n := math.Hypot(dx, dy)
	nx, ny := -dy/n, dx/n
	if nx < 0 || (nx == 0 && ny < 0) {
		nx, ny = -nx, -ny
	}
	dot := nx*d[0] + ny*d[1]
	// Within 10 degrees of running along the line, the direction does not
	// say which side is in.
	if math.Abs(dot) < math.Sin(10*math.Pi/180) {
		return false, false
	}
	return dot > 0, true
}

// Config is one camera's counting setup and tuning.
type Config struct {
	Lines []Line `yaml:"lines"`
	Zones []Zone `yaml:"zones"`
	// Method finds the people: detector (the default) runs a person
	// detector (NanoDet) on the obscured picture Rate times a second and
	// follows its boxes, so people walking together stay apart and people
	// standing still stay counted; motion finds moving blobs against a
	// learned background on every frame, for machines without headroom for
	// the detector (it merges people walking together and loses people who
	// stand still). docs/counting.md compares them.
	Method string `yaml:"method"`
	// Rate is how many times a second the detector method looks for
	// people, in stream time. It defaults to 5.
	Rate float64 `yaml:"rate"`
	// Lost is how long the detector method keeps following a person it no
	// longer sees (hidden behind another, missed by the detector) before
	// taking them for gone. It defaults to 2s.
	Lost time.Duration `yaml:"lost"`
	// Window is how often count events are emitted, in stream time. It
	// defaults to 10s.
	//
	// The keys below tune the motion method, except hysteresis and smooth,
	// which both methods use.
	Window time.Duration `yaml:"window"`
	// Hysteresis is the half-width of the band around a line, as a fraction
	// of the frame diagonal, that a person must clear on both sides for a
	// crossing to count: jitter on the line does not count. It defaults to
	// 0.01.
	Hysteresis float64 `yaml:"hysteresis"`
	// MinArea is the smallest moving blob taken for a person, as a fraction
	// of the frame area. It defaults to 0.0015 (about 660 px at 768x576).
	MinArea float64 `yaml:"min_area"`
	// MaxAge is how many frames a track coasts on its prediction without a
	// detection before it is dropped. It defaults to 10.
	MaxAge int `yaml:"max_age"`
	// MinHits is how many detections confirm a new track. It defaults to 3.
	MinHits int `yaml:"min_hits"`
	// Smooth is the number of measurements occupancy is smoothed over
	// (median): frames for the motion method, where it defaults to 10;
	// detections for the detector method, where it defaults to 3 (a
	// longer median lagged people walking through a zone by a second).
	Smooth int `yaml:"smooth"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Method == "" {
		c.Method = MethodDetector
	}
	if c.Rate == 0 {
		c.Rate = 5
	}
	if c.Lost == 0 {
		c.Lost = 2 * time.Second
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.Hysteresis == 0 {
		c.Hysteresis = 0.01
	}
	if c.MinArea == 0 {
		c.MinArea = 0.0015
	}
	if c.MaxAge == 0 {
		c.MaxAge = 10
	}
	if c.MinHits == 0 {
		c.MinHits = 3
	}
	if c.Smooth == 0 {
		c.Smooth = 10
		if c.Method == MethodDetector {
			c.Smooth = 3
		}
	}
	for i := range c.Lines {
		if c.Lines[i].In == "" {
			c.Lines[i].In = LeftToRight
		}
	}
}

// Validate names the first bad key under prefix (e.g. "cameras[0]").
func (c *Config) Validate(prefix string) error {
	ids := map[string]string{}
	inUnit := func(p Point) bool {
		return p[0] >= 0 && p[0] <= 1 && p[1] >= 0 && p[1] <= 1
	}
	for i, l := range c.Lines {
		key := fmt.Sprintf("%s.lines[%d]", prefix, i)
		if err := footfall.ValidID(l.ID); err != nil {
			return fmt.Errorf("%s.id: %w", key, err)
		}
		if prev, ok := ids[l.ID]; ok {
			return fmt.Errorf("%s.id: %q is already used by %s", key, l.ID, prev)
		}
		ids[l.ID] = key
		if !inUnit(l.From) {
			return fmt.Errorf("%s.from: %v is outside the frame [0,1]x[0,1]", key, l.From)
		}
		if !inUnit(l.To) {
			return fmt.Errorf("%s.to: %v is outside the frame [0,1]x[0,1]", key, l.To)
		}
		if math.Hypot(l.To[0]-l.From[0], l.To[1]-l.From[1]) < 0.01 {
			return fmt.Errorf("%s.to: the line is too short", key)
		}
		if _, ok := l.inIsRight(); !ok {
			if _, known := screenDirs[l.In]; known {
				return fmt.Errorf("%s.in: %q runs along the line, so it does not say which side is in (a vertical line takes left or right, a horizontal one up or down)", key, l.In)
			}
			return fmt.Errorf("%s.in: %q (want up, down, left, right, an arrow ↑ ↓ ← →, left_to_right or right_to_left)", key, l.In)
		}
	}
	for i, z := range c.Zones {
		key := fmt.Sprintf("%s.zones[%d]", prefix, i)
		if err := footfall.ValidID(z.ID); err != nil {
			return fmt.Errorf("%s.id: %w", key, err)
		}
		if prev, ok := ids[z.ID]; ok {
			return fmt.Errorf("%s.id: %q is already used by %s", key, z.ID, prev)
		}
		ids[z.ID] = key
		if len(z.Polygon) < 3 {
			return fmt.Errorf("%s.polygon: %d points, want at least 3", key, len(z.Polygon))
		}
		for j, p := range z.Polygon {
			if !inUnit(p) {
				return fmt.Errorf("%s.polygon[%d]: %v is outside the frame [0,1]x[0,1]", key, j, p)
			}
		}
		if z.Capacity < 0 {
			return fmt.Errorf("%s.capacity: %d is negative", key, z.Capacity)
		}
	}
	switch {
	case c.Method != MethodDetector && c.Method != MethodMotion:
		return fmt.Errorf("%s.method: %q (want detector or motion)", prefix, c.Method)
	case !(c.Rate >= 0.5 && c.Rate <= 30):
		return fmt.Errorf("%s.rate: %v is outside [0.5, 30] detections a second", prefix, c.Rate)
	case c.Lost < 200*time.Millisecond || c.Lost > time.Minute:
		return fmt.Errorf("%s.lost: %v is outside [200ms, 1m]", prefix, c.Lost)
	case c.Window < time.Second:
		return fmt.Errorf("%s.window: %v is under 1s", prefix, c.Window)
	case !(c.Hysteresis > 0 && c.Hysteresis < 0.2):
		return fmt.Errorf("%s.hysteresis: %v is outside (0, 0.2)", prefix, c.Hysteresis)
	case !(c.MinArea > 0 && c.MinArea < 0.5):
		return fmt.Errorf("%s.min_area: %v is outside (0, 0.5)", prefix, c.MinArea)
	case c.MaxAge < 1:
		return fmt.Errorf("%s.max_age: %d is under 1", prefix, c.MaxAge)
	case c.MinHits < 1:
		return fmt.Errorf("%s.min_hits: %d is under 1", prefix, c.MinHits)
	case c.Smooth < 1:
		return fmt.Errorf("%s.smooth: %d is under 1", prefix, c.Smooth)
	}
	return nil
}
