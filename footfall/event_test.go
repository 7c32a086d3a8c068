package footfall

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const good = `{"schema":"veil.footfall.v1","camera":"lobby","epoch":1764255600123,"seq":41,
"window_start":"2026-11-27T15:00:00Z","window_end":"2026-11-27T15:00:10Z",
"lines":[{"id":"door","entries":3,"exits":1}],"zones":[{"id":"showroom","occupancy":12,"peak":14,"capacity":40}]}`

func TestParse(t *testing.T) {
	e, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if e.Camera != "lobby" || e.Seq != 41 || e.Lines[0].Entries != 3 || e.Zones[0].Capacity != 40 ||
		!e.WindowEnd.Equal(time.Date(2026, 11, 27, 15, 0, 10, 0, time.UTC)) {
		t.Errorf("got %+v", e)
	}
	for _, tc := range []struct{ in, want string }{
		{`not json`, "malformed"},
		{strings.Replace(good, "v1", "v2", 1), "unknown schema"},
		{`{"camera":"x"}`, "unknown schema"},
		{strings.Replace(good, `"seq":41`, `"seq":41,"track_id":7`, 1), "unknown field"},
		{strings.Replace(good, `"camera":"lobby"`, `"camera":"lo by"`, 1), "event camera"},
		{strings.Replace(good, `"epoch":1764255600123`, `"epoch":0`, 1), "epoch"},
		{strings.Replace(good, `15:00:10Z`, `14:00:00Z`, 1), "window"},
		{strings.Replace(good, `"entries":3`, `"entries":-3`, 1), "negative"},
		{strings.Replace(good, `"occupancy":12`, `"occupancy":-1`, 1), "negative"},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.60s: got %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := Parse([]byte(strings.Replace(good, "v1", "v9", 1))); !errors.Is(err, ErrSchema) {
		t.Errorf("schema error not ErrSchema: %v", err)
	}
}

func TestAfter(t *testing.T) {
	e := Event{Epoch: 10, Seq: 5}
	for _, tc := range []struct {
		epoch int64
		seq   uint64
		want  bool
	}{{10, 4, true}, {10, 5, false}, {10, 6, false}, {9, 100, true}, {11, 0, false}} {
		if got := e.After(tc.epoch, tc.seq); got != tc.want {
			t.Errorf("After(%d,%d) = %v", tc.epoch, tc.seq, got)
		}
	}
}

// FuzzParse: whatever arrives on the topic, Parse never panics, and what
// it accepts round-trips and validates.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"schema":"veil.footfall.v1"}`))
	f.Add([]byte(`{"schema":"veil.footfall.v1","camera":"a","epoch":1,"seq":0,"window_start":"2026-01-01T00:00:00Z","window_end":"2026-01-01T00:00:01Z","lines":null,"zones":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted invalid event: %v", err)
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}
