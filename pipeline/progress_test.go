package pipeline

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressTerminalAndPlain(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, tty: true, total: 100, start: time.Now().Add(-10 * time.Second)}
	p.print(50, time.Now())
	got := b.String()
	for _, want := range []string{"\r[###############---------------]", "50/100 frames", "5.0 fps", "ETA 0:10"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal line %q lacks %q", got, want)
		}
	}
	b.Reset()
	p.tty = false
	p.print(25, p.start.Add(5*time.Second))
	if got := b.String(); got != "progress: 25/100 frames (25%), 5.0 fps, ETA 0:15\n" {
		t.Errorf("plain line %q", got)
	}
}
