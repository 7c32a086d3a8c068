package counter

import "time"

// SchemaV1 identifies the version of Event. A consumer must reject other
// values rather than guess (see docs/events.md).
const SchemaV1 = "veil.footfall.v1"

// Event is one camera's counts for one window. It is anonymous by
// construction: no image, no embedding, no track id, no position; only
// per-line and per-zone numbers that many people add up to.
//
// (Camera, Epoch, Seq) identifies an event uniquely and orders a camera's
// events: Seq counts from 0 within one run of the counter, and Epoch (the
// run's start, Unix milliseconds) grows across restarts. Downstream
// deduplicates on it.
type Event struct {
	Schema      string      `json:"schema"`
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
