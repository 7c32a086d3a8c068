package console

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/veilproject/veil/rtcconf"
)

// Line and Zone are a camera's counting lines and zones as the editor
// draws them: normalized coordinates (x right, y down), the keys of
// veil.yaml.
type Line struct {
	ID   string     `json:"id"`
	From [2]float64 `json:"from"`
	To   [2]float64 `json:"to"`
	In   string     `json:"in,omitempty"`
}

type Zone struct {
	ID       string       `json:"id"`
	Polygon  [][2]float64 `json:"polygon"`
	Capacity int          `json:"capacity,omitempty"`
}

// Counting is one camera's lines and zones.
type Counting struct {
	Lines []Line `json:"lines"`
	Zones []Zone `json:"zones"`
}

// CountingEditor is the service's side of the line and zone editor.
type CountingEditor interface {
	// Counting is camera's lines and zones now, and the file an edit is
	// written to ("" when there is none: the edit applies until restart).
	// Not ok: the editor cannot change this camera, and why.
	Counting(camera string) (c Counting, file string, why string)
	// SetCounting checks c as the configuration file is checked at start
	// (the error names the key), writes it and restarts the camera's
	// counting with it.
	SetCounting(camera string, c Counting) error
}

// maxCountingBody bounds an edit: far more lines and zones than a camera
// has.
const maxCountingBody = 64 << 10

// countingGet answers the editor's GET: the camera's lines and zones.
func (c *Console) countingGet(w http.ResponseWriter, r *http.Request, x *session) {
	id := r.PathValue("id")
	if _, ok := c.cams[id]; !ok || c.deps.Editor == nil {
		http.NotFound(w, r)
		return
	}
	cnt, file, why := c.deps.Editor.Counting(id)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"lines": orEmpty(cnt.Lines), "zones": orEmpty(cnt.Zones), "file": file, "refused": why})
}

// countingSet applies an edit (admins, with the CSRF header), audited.
func (c *Console) countingSet(w http.ResponseWriter, r *http.Request, x *session) {
	id := r.PathValue("id")
	if _, ok := c.cams[id]; !ok || c.deps.Editor == nil {
		http.NotFound(w, r)
		return
	}
	var cnt Counting
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCountingBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cnt); err != nil {
		http.Error(w, "malformed lines and zones: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := c.deps.Editor.SetCounting(id, cnt); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.audit.Log(Event{Kind: AuditCountingChanged, User: x.user, From: rtcconf.ClientIP(r), Camera: id,
		Detail: clip(fmt.Sprintf("%d lines, %d zones", len(cnt.Lines), len(cnt.Zones)), maxDetailField)})
	w.WriteHeader(http.StatusNoContent)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
