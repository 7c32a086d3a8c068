package wallclock

import (
	"testing"
	"time"
)

// TestGuardHoldsAgainstJumps: small steps (NTP's corrections) are
// followed; a jump beyond Max, forward or back, is not, until the wall
// clock comes back.
func TestGuardHoldsAgainstJumps(t *testing.T) {
	g := &Guard{Max: time.Hour}
	wall := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	const year = 365 * 24 * time.Hour
	for _, tc := range []struct {
		name     string
		mono     time.Duration // since the start
		off      time.Duration // the wall clock's error, on top of mono
		wantAt   time.Duration // the answer, from wall
		wantJump time.Duration
	}{
		{"start", 0, 0, 0, 0},
		{"ten minutes on", 10 * time.Minute, 0, 10 * time.Minute, 0},
		{"an NTP step of 30 s", 20 * time.Minute, 30 * time.Second, 20*time.Minute + 30*time.Second, 0},
		{"set a year ahead", 30 * time.Minute, year, 30*time.Minute + 30*time.Second, year - 30*time.Second},
		{"still a year ahead", 40 * time.Minute, year, 40*time.Minute + 30*time.Second, year - 30*time.Second},
		{"corrected", 50 * time.Minute, 30 * time.Second, 50*time.Minute + 30*time.Second, 0},
		{"set a day back", 60 * time.Minute, -24 * time.Hour, 60*time.Minute + 30*time.Second, -24*time.Hour - 30*time.Second},
	} {
		got, jump := g.at(wall.Add(tc.mono+tc.off), tc.mono)
		if d := got.Sub(wall); d != tc.wantAt || jump != tc.wantJump {
			t.Errorf("%s: at +%v jump %v, want +%v jump %v", tc.name, d, jump, tc.wantAt, tc.wantJump)
		}
	}
}
