package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/console"
)

// editor is the service's side of the console's line and zone editor.
type editor struct{ s *Service }

var _ console.CountingEditor = editor{}

func (e editor) Counting(camera string) (console.Counting, string, string) {
	s := e.s
	s.slotsMu.Lock()
	sl, ok := s.slots[camera]
	s.slotsMu.Unlock()
	if !ok {
		return console.Counting{}, "", "no such camera"
	}
	var out console.Counting
	for _, l := range sl.cam.Counting.Lines {
		out.Lines = append(out.Lines, console.Line{ID: l.ID, From: l.From, To: l.To, In: l.In})
	}
	for _, z := range sl.cam.Counting.Zones {
		cz := console.Zone{ID: z.ID, Capacity: z.Capacity}
		for _, p := range z.Polygon {
			cz.Polygon = append(cz.Polygon, p)
		}
		out.Zones = append(out.Zones, cz)
	}
	return out, s.cfg.Path, e.refusal()
}

// refusal is why the editor may not change lines here, or "".
func (e editor) refusal() string {
	if e.s.placer != nil {
		return "with placement every box of the site has the same cameras: edit veil.yaml and give it to each box"
	}
	return ""
}

// SetCounting checks the camera's new lines and zones as the file is
// checked at start, writes them into the configuration file (when veil
// was started from one), and restarts the camera with them.
func (e editor) SetCounting(camera string, c console.Counting) error {
	s := e.s
	// One edit at a time: each rewrites the whole file.
	s.editMu.Lock()
	defer s.editMu.Unlock()
	if why := e.refusal(); why != "" {
		return errors.New(why)
	}
	var lines []counter.Line
	var zones []counter.Zone
	for _, l := range c.Lines {
		lines = append(lines, counter.Line{ID: l.ID, From: l.From, To: l.To, In: l.In})
	}
	for _, z := range c.Zones {
		cz := counter.Zone{ID: z.ID, Capacity: z.Capacity}
		for _, p := range z.Polygon {
			cz.Polygon = append(cz.Polygon, p)
		}
		zones = append(zones, cz)
	}
	s.slotsMu.Lock()
	sl, ok := s.slots[camera]
	s.slotsMu.Unlock()
	if !ok {
		return fmt.Errorf("no camera %q", camera)
	}
	cam := sl.cam
	cam.Counting.Lines, cam.Counting.Zones = lines, zones
	// Checked as the file's camera is at start, so the error names the
	// key as it would then; with a file, the whole file is checked again
	// before it is written.
	check := config.Config{Cameras: slices.Clone(s.cfg.Cameras)}
	i := slices.IndexFunc(check.Cameras, func(c config.Camera) bool { return c.ID == camera })
	check.Cameras[i] = cam
	if err := check.ValidateCamera(i); err != nil {
		return err
	}
	if cam.Counted() && cam.Counting.Method == counter.MethodDetector && s.people == nil {
		return fmt.Errorf("cameras[%d]: counting with method detector needs veil restarted: the person network is loaded at start when a camera needs it", i)
	}
	if s.cfg.Path != "" {
		if _, err := config.SetCounting(s.cfg.Path, camera, lines, zones); err != nil {
			return err
		}
	}
	s.setSlot(cam)
	select {
	case s.reconf <- camera:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("the camera could not be restarted now (saved; it applies at the next start)")
	}
}
