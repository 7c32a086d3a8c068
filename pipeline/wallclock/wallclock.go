// Package wallclock gives deletion passes (recording retention, audit
// pruning) a time to age files against that a jump of the wall clock
// cannot move: a clock set a year ahead must not make every file a year
// old at once.
package wallclock

import (
	"sync"
	"time"
)

// Guard follows the wall clock while it moves as the monotonic clock does
// (within Max of it since the last trusted reading); after a larger jump,
// either way, it keeps to the monotonic clock from the last trusted
// reading, until the wall clock comes back within Max of that (a mistaken
// jump corrected) or the process restarts (the new time accepted by
// whoever restarted it).
type Guard struct {
	// Max is the largest jump followed. Zero means 1h.
	Max time.Duration
	// Wall reads the wall clock; nil: time.Now (a test sets it wrong).
	Wall func() time.Time

	mu      sync.Mutex
	started bool
	wall    time.Time     // the last trusted wall time
	mono    time.Duration // the monotonic clock then
}

// start is the origin of the monotonic readings.
var start = time.Now()

// Now is the time to age files against, and how far the wall clock is
// off it (zero while it is trusted).
func (g *Guard) Now() (time.Time, time.Duration) {
	now := time.Now()
	wall := now
	if g.Wall != nil {
		wall = g.Wall()
	}
	return g.at(wall.Round(0), now.Sub(start))
}

func (g *Guard) at(wall time.Time, mono time.Duration) (time.Time, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	max := g.Max
	if max == 0 {
		max = time.Hour
	}
	if !g.started {
		g.started, g.wall, g.mono = true, wall, mono
		return wall, 0
	}
	trusted := g.wall.Add(mono - g.mono)
	jump := wall.Sub(trusted)
	if jump <= max && jump >= -max {
		g.wall, g.mono = wall, mono
		return wall, 0
	}
	return trusted, jump
}
