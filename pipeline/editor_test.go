package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/console"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) events() []footfall.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []footfall.Event
	for _, l := range strings.Split(s.b.String(), "\n") {
		var e footfall.Event
		if json.Unmarshal([]byte(l), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// TestEditRestartsTheCamera: the console's editor changes a running
// camera's lines. The file gets them, the camera's counting restarts with
// them (a new epoch, counting on the new line only), and the service
// carries on; an edit the file would refuse changes nothing.
func TestEditRestartsTheCamera(t *testing.T) {
	if testing.Short() {
		t.Skip("obscures and counts a real clip")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "veil.yaml")
	os.WriteFile(path, []byte(`cameras:
  - id: lobby
    file: /usr/share/doc/opencv-doc/examples/data/vtest.avi
    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]
    window: 1s
    method: motion
metrics: {listen: "127.0.0.1:0"}
`), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	svc, err := NewService(cfg, ServiceDeps{Registry: reg, Metrics: m, Events: out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the service ended with %v", err)
		}
	}()
	await := func(what string, cond func(footfall.Event) bool) footfall.Event {
		t.Helper()
		for t0 := time.Now(); time.Since(t0) < 60*time.Second; time.Sleep(100 * time.Millisecond) {
			for _, e := range out.events() {
				if cond(e) {
					return e
				}
			}
		}
		t.Fatalf("no event with %s in 60 s", what)
		return footfall.Event{}
	}
	first := await("line road", func(e footfall.Event) bool { return len(e.Lines) == 1 && e.Lines[0].ID == "road" })

	ed := editor{svc}
	if err := ed.SetCounting("lobby", console.Counting{Lines: []console.Line{{ID: "road", From: [2]float64{0.45, 0.68}, To: [2]float64{1.45, 0.30}}}}); err == nil ||
		!strings.Contains(err.Error(), "cameras[0].lines[0]") {
		t.Errorf("a line off the picture: %v, want an error naming cameras[0].lines[0]", err)
	}
	if err := ed.SetCounting("lobby", console.Counting{Lines: []console.Line{{ID: "gate", From: [2]float64{0.2, 0.5}, To: [2]float64{0.8, 0.5}, In: "down"}}}); err != nil {
		t.Fatal(err)
	}
	if c, file, why := ed.Counting("lobby"); len(c.Lines) != 1 || c.Lines[0].ID != "gate" || file != path || why != "" {
		t.Errorf("the editor now reads %+v from %q (%q)", c, file, why)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "{id: gate, from: [0.2, 0.5], to: [0.8, 0.5], in: down}") || strings.Contains(string(b), "id: road") {
		t.Errorf("the file:\n%s", b)
	}
	gate := await("line gate", func(e footfall.Event) bool { return len(e.Lines) == 1 && e.Lines[0].ID == "gate" })
	if gate.Epoch <= first.Epoch || gate.Seq != 0 {
		t.Errorf("the edited camera's first event: epoch %d seq %d; the first run's epoch %d", gate.Epoch, gate.Seq, first.Epoch)
	}
	time.Sleep(2 * time.Second)
	for _, e := range out.events() {
		if e.Epoch == gate.Epoch && (len(e.Lines) != 1 || e.Lines[0].ID != "gate") {
			t.Errorf("the new run counts %+v", e.Lines)
		}
	}
	if n := len(svc.Cameras()); n != 2 {
		t.Errorf("%d runs of lobby, want 2", n)
	}
	// The live view goes on across the restart: the stream takes a new
	// viewer, and pictures reach it.
	sub, err := svc.streams["lobby"].Subscribe()
	if err != nil {
		t.Fatalf("a live viewer after the restart: %v", err)
	}
	defer svc.streams["lobby"].Unsubscribe(sub)
	select {
	case <-sub.C:
	case <-time.After(10 * time.Second):
		t.Error("no picture for a live viewer after the restart")
	}
}
