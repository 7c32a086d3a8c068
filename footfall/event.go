// Package footfall defines the anonymous count event that the counter
// emits, the publisher sends over Kafka and the exporter turns into
// Prometheus metrics: schema veil.footfall.v1 (docs/events.md).
package footfall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SchemaV1 identifies the version of Event. A consumer must reject other
// values rather than guess (see docs/events.md).
const SchemaV1 = "veil.footfall.v1"

// Event is one camera's counts for one window. It is anonymous by
// construction: no image, no embedding, no track id, no position; only
// per-line and per-zone numbers that many people add up to.
//
// (Site, Camera, Epoch, Seq) identifies an event uniquely and orders a
// camera's events: Seq counts from 0 within one run of the counter, and
// Epoch (the run's start, Unix milliseconds) grows across restarts.
// Downstream deduplicates on it.
type Event struct {
	Schema string `json:"schema"`
	// Site names the office (the box's site) when the box has one; two
	// sites may both have a camera called lobby. Added to v1 compatibly:
	// absent when empty.
	Site        string      `json:"site,omitempty"`
	Camera      string      `json:"camera"`
	Epoch       int64       `json:"epoch"`
	Seq         uint64      `json:"seq"`
	WindowStart time.Time   `json:"window_start"`
	WindowEnd   time.Time   `json:"window_end"`
	Lines       []LineCount `json:"lines"`
	Zones       []ZoneCount `json:"zones"`
}

// LineCount is the crossings of one line during the window.
type LineCount struct {
	ID      string `json:"id"`
	Entries int    `json:"entries"`
	Exits   int    `json:"exits"`
}

// ZoneCount is one zone's occupancy: at the end of the window and its peak
// during it, both smoothed; and its configured capacity (0: none).
type ZoneCount struct {
	ID        string `json:"id"`
	Occupancy int    `json:"occupancy"`
	Peak      int    `json:"peak"`
	Capacity  int    `json:"capacity"`
}

// ErrSchema is wrapped by Parse for an event of another schema version.
var ErrSchema = errors.New("unknown schema")

// Parse decodes and checks one event from outside (a Kafka message). It
// rejects unknown schema versions, unknown fields and values no counter
// emits.
func Parse(b []byte) (Event, error) {
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return Event{}, fmt.Errorf("malformed event: %w", err)
	}
	if head.Schema != SchemaV1 {
		return Event{}, fmt.Errorf("%w %q (want %s)", ErrSchema, head.Schema, SchemaV1)
	}
	var e Event
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Event{}, fmt.Errorf("malformed event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Validate checks the values of an event.
func (e Event) Validate() error {
	if e.Site != "" {
		if err := ValidID(e.Site); err != nil {
			return fmt.Errorf("event site: %w", err)
		}
	}
	if err := ValidID(e.Camera); err != nil {
		return fmt.Errorf("event camera: %w", err)
	}
	if e.Epoch <= 0 {
		return fmt.Errorf("event epoch %d: not positive", e.Epoch)
	}
	if !e.WindowEnd.After(e.WindowStart) {
		return fmt.Errorf("event window %v..%v: empty", e.WindowStart, e.WindowEnd)
	}
	for _, l := range e.Lines {
		if err := ValidID(l.ID); err != nil {
			return fmt.Errorf("event line: %w", err)
		}
		if l.Entries < 0 || l.Exits < 0 {
			return fmt.Errorf("event line %s: negative count", l.ID)
		}
	}
	for _, z := range e.Zones {
		if err := ValidID(z.ID); err != nil {
			return fmt.Errorf("event zone: %w", err)
		}
		if z.Occupancy < 0 || z.Peak < 0 || z.Capacity < 0 {
			return fmt.Errorf("event zone %s: negative count", z.ID)
		}
	}
	return nil
}

// Source is the camera's name across a fleet: site/camera, or the camera
// alone for a box with no site. Neither id can hold a '/'.
func (e Event) Source() string { return SourceOf(e.Site, e.Camera) }

// SourceOf is Source for a site and a camera.
func SourceOf(site, camera string) string {
	if site == "" {
		return camera
	}
	return site + "/" + camera
}

// After reports whether e comes after (epoch, seq) in its camera's order.
func (e Event) After(epoch int64, seq uint64) bool {
	return e.Epoch > epoch || e.Epoch == epoch && e.Seq > seq
}

// ValidID keeps ids usable as metric label values: 1-64 of letters,
// digits, '_', '-' and '.'.
func ValidID(id string) error {
	if id == "" {
		return fmt.Errorf("empty id")
	}
	if len(id) > 64 {
		return fmt.Errorf("%q is longer than 64 characters", id)
	}
	if c := id[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		// An id names directories and files (a camera's recordings):
		// ".", ".." and hidden names must not be possible.
		return fmt.Errorf("%q: start with a letter or a digit", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("%q: use letters, digits, '_', '-' and '.'", id)
		}
	}
	return nil
}
