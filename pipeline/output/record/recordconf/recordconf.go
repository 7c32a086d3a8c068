// Package recordconf is the recordings' part of veil.yaml (the key
// recordings) and the names segments are given: apart from package
// record, whose encoder is cgo, so that reading a configuration needs no
// native headers.
package recordconf

import (
	"fmt"
	"regexp"
	"time"
)

// DefaultPreset is libx264's preset for recordings (encode.DefaultPreset
// is the same; a test holds them equal).
const DefaultPreset = "superfast"

// SegmentName matches the names of the segments a Recorder writes:
// {camera}-{UTC start, to the millisecond}.mp4.
var SegmentName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*-(\d{8}T\d{6}\.\d{3}Z)\.mp4$`)

// Config is the recordings policy.
type Config struct {
	// Dir holds one subdirectory of segments per camera. Empty disables
	// recording.
	Dir string `yaml:"dir"`
	// Segment is each file's length. It defaults to 60s.
	Segment time.Duration `yaml:"segment"`
	// Keep deletes segments older than this. It defaults to 72h.
	Keep time.Duration `yaml:"keep"`
	// MaxBytes deletes the oldest segments (of all cameras) while the total
	// is above it. It defaults to 50 GiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// Preset is libx264's preset. It defaults to DefaultPreset.
	Preset string `yaml:"preset"`
	// MaxClockJump is the largest jump of the wall clock that retention
	// follows: after a larger one (a clock set wrong), segments are aged
	// by the monotonic clock until the wall clock is back or veil
	// restarts, so a clock set a year ahead deletes nothing. It defaults
	// to 1h.
	MaxClockJump time.Duration `yaml:"max_clock_jump"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Segment == 0 {
		c.Segment = time.Minute
	}
	if c.Keep == 0 {
		c.Keep = 72 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 50 << 30
	}
	if c.Preset == "" {
		c.Preset = DefaultPreset
	}
	if c.MaxClockJump == 0 {
		c.MaxClockJump = time.Hour
	}
}

// Validate names the first bad key under prefix.
func (c *Config) Validate(prefix string) error {
	switch {
	case c.Dir == "":
		return nil
	case c.Segment < time.Second:
		return fmt.Errorf("%s.segment: %v is under 1s", prefix, c.Segment)
	case c.Keep < c.Segment:
		return fmt.Errorf("%s.keep: %v is shorter than a segment (%v)", prefix, c.Keep, c.Segment)
	case c.MaxBytes < 1<<20:
		return fmt.Errorf("%s.max_bytes: %d is under 1 MiB", prefix, c.MaxBytes)
	case c.MaxClockJump < time.Minute:
		return fmt.Errorf("%s.max_clock_jump: %v is under 1m", prefix, c.MaxClockJump)
	}
	switch c.Preset {
	case "ultrafast", "superfast", "veryfast", "faster", "fast", "medium":
	default:
		return fmt.Errorf("%s.preset: %q (want ultrafast, superfast, veryfast, faster, fast or medium)", prefix, c.Preset)
	}
	return nil
}
