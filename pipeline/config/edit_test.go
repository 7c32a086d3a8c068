package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veilproject/veil/counter"
)

// TestSetCounting: the editor's lines and zones replace one camera's in
// the file, which keeps its comments, its other keys and its mode; a line
// the file would refuse at start is refused, naming the key, and the file
// is left as it was.
func TestSetCounting(t *testing.T) {
	const file = `# the office's cameras
cameras:
  - id: lobby # the front door
    url: rtsp://10.0.0.5/stream1
    lines: [{id: old, from: [0.1, 0.1], to: [0.1, 0.9]}]
    window: 5s
  - id: desk
    url: rtsp://10.0.0.6/stream1
    zones: [{id: counter, polygon: [[0, 0], [1, 0], [1, 1]]}]
metrics: {listen: "127.0.0.1:9108"}
`
	path := filepath.Join(t.TempDir(), "veil.yaml")
	if err := os.WriteFile(path, []byte(file), 0o640); err != nil {
		t.Fatal(err)
	}
	lines := []counter.Line{{ID: "door", From: counter.Point{0.4, 0.12345}, To: counter.Point{0.4, 0.9}, In: "right"}}
	zones := []counter.Zone{{ID: "showroom", Polygon: []counter.Point{{0, 0}, {1, 0}, {1, 1}, {0, 1}}, Capacity: 40}}
	cfg, err := SetCounting(path, "lobby", lines, zones)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"# the office's cameras", "# the front door", "window: 5s", "{id: door, from: [0.4, 0.123], to: [0.4, 0.9], in: right}",
		"{id: showroom, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]], capacity: 40}", "{id: counter, polygon: [[0, 0], [1, 0], [1, 1]]}"} {
		if !strings.Contains(got, want) {
			t.Errorf("the file lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "id: old") {
		t.Errorf("the old line is still there:\n%s", got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	lobby := cfg.Cameras[0].Counting
	if len(lobby.Lines) != 1 || lobby.Lines[0].ID != "door" || lobby.Lines[0].From[1] != 0.123 || len(lobby.Zones) != 1 || lobby.Window.String() != "5s" {
		t.Errorf("the new configuration's lobby: %+v", lobby)
	}
	if again, err := Load(path); err != nil || len(again.Cameras[1].Counting.Zones) != 1 {
		t.Errorf("loading the written file: %v", err)
	}

	// An id that would read as another type stays a string.
	if cfg, err := SetCounting(path, "lobby", []counter.Line{{ID: "null", From: counter.Point{0.4, 0.1}, To: counter.Point{0.4, 0.9}}}, zones); err != nil || cfg.Cameras[0].Counting.Lines[0].ID != "null" {
		t.Errorf("a line named null: %v", err)
	}
	// Removing every line and zone removes the keys.
	if _, err := SetCounting(path, "desk", nil, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "counter") {
		t.Errorf("the desk's zone is still there:\n%s", b)
	}

	before, _ := os.ReadFile(path)
	for _, tc := range []struct {
		name, camera string
		lines        []counter.Line
		want         string
	}{
		{"outside the picture", "lobby", []counter.Line{{ID: "door", From: counter.Point{0.4, 0.1}, To: counter.Point{1.4, 0.9}}}, "cameras[0].lines[0]"},
		{"a bad id", "lobby", []counter.Line{{ID: "a door", From: counter.Point{0.4, 0.1}, To: counter.Point{0.4, 0.9}}}, "cameras[0].lines[0]"},
		{"a direction along the line", "lobby", []counter.Line{{ID: "door", From: counter.Point{0.4, 0.1}, To: counter.Point{0.4, 0.9}, In: "up"}}, "cameras[0].lines[0]"},
		{"no such camera", "garage", nil, `no camera "garage"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SetCounting(path, tc.camera, tc.lines, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Error("a refused edit changed the file")
			}
		})
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}
