package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sharedCounting is where the labelled clips of unknown licence live: read
// from there, never copied into the repository (../shared/counting beside
// the checkout, or $VEIL_COUNTING_DIR).
func sharedCounting(t *testing.T) string {
	t.Helper()
	dir := cmp.Or(os.Getenv("VEIL_COUNTING_DIR"), "../../../shared/counting")
	if _, err := os.Stat(filepath.Join(dir, "labels.json")); err != nil {
		t.Skipf("no labelled clips at %s (set VEIL_COUNTING_DIR): %v", dir, err)
	}
	return dir
}

// withRate is a counting config (JSON) with the detector's rate set to
// $VEIL_COUNT_RATE, when it is set: the rate table of docs/counting.md
// runs the labelled tests at each rate.
func withRate(t *testing.T, config []byte) []byte {
	r := os.Getenv("VEIL_COUNT_RATE")
	if r == "" {
		return config
	}
	rate, err := strconv.ParseFloat(r, 64)
	if err != nil {
		t.Fatalf("VEIL_COUNT_RATE: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(config, &m); err != nil {
		t.Fatal(err)
	}
	m["rate"] = rate
	b, _ := json.Marshal(m)
	t.Logf("detector rate %v a second ($VEIL_COUNT_RATE)", rate)
	return b
}

// labelledClip mirrors a clip of ../shared/counting/labels.json.
type labelledClip struct {
	File      string `json:"file"`
	FPS       float64
	Crossings []struct {
		Frame     int    `json:"frame"`
		Direction string `json:"direction"`
	} `json:"crossings"`
	Occupancy map[string]int  `json:"occupancy"`
	Config    json.RawMessage `json:"config"`
}

var (
	crossingRe  = regexp.MustCompile(`crossing frame=(\d+) line=\S+ direction=(in|out)`)
	occupancyRe = regexp.MustCompile(`occupancy frame=(\d+) zone=\S+ people=(\d+)`)
)

// clipScore is one clip's counts against its labels.
type clipScore struct {
	matched, counted, labelled int
	inErr, outErr              int     // counted minus labelled
	occErr                     float64 // summed absolute error over the labelled samples
	occSamples                 int
}

// scoreCount scores `veil count -crossings -occupancy` output: crossings
// matched by direction within tol frames; occupancy as the last measure at
// or before each labelled frame.
func scoreCount(out string, want []crossing, occ map[string]int, tol int) clipScore {
	var got []crossing
	ins, outs := 0, 0
	for _, m := range crossingRe.FindAllStringSubmatch(out, -1) {
		f, _ := strconv.Atoi(m[1])
		got = append(got, crossing{f, m[2] == "in"})
		if m[2] == "in" {
			ins++
		} else {
			outs++
		}
	}
	wantIn := 0
	for _, w := range want {
		if w.ltr {
			wantIn++
		}
	}
	tp, _, _ := matchCrossings(got, want, tol)
	s := clipScore{matched: tp, counted: len(got), labelled: len(want), inErr: ins - wantIn, outErr: outs - (len(want) - wantIn)}
	type sample struct{ frame, people int }
	var seen []sample
	for _, m := range occupancyRe.FindAllStringSubmatch(out, -1) {
		f, _ := strconv.Atoi(m[1])
		p, _ := strconv.Atoi(m[2])
		seen = append(seen, sample{f, p})
	}
	for k, people := range occ {
		f, _ := strconv.Atoi(k)
		measured := 0
		for _, x := range seen {
			if x.frame <= f {
				measured = x.people
			}
		}
		s.occErr += float64(absInt(measured - people))
		s.occSamples++
	}
	return s
}

// TestCountLabelledClips counts the hand-labelled clips of
// ../shared/counting (an overhead walkway with pairs, a hall of small
// people) with the default method and holds the floors: crossing
// precision and recall over the set, no clip off by more than one
// crossing, and occupancy error per labelled sample. docs/counting.md
// gives the figures per clip and method.
func TestCountLabelledClips(t *testing.T) {
	if testing.Short() {
		t.Skip("obscures and counts two real clips")
	}
	dir := sharedCounting(t)
	b, err := os.ReadFile(filepath.Join(dir, "labels.json"))
	if err != nil {
		t.Fatal(err)
	}
	var labels struct{ Clips []labelledClip }
	if err := json.Unmarshal(b, &labels); err != nil {
		t.Fatal(err)
	}
	var total clipScore
	for _, c := range labels.Clips {
		cfg := filepath.Join(t.TempDir(), "lines.yaml")
		if err := os.WriteFile(cfg, withRate(t, c.Config), 0o644); err != nil { // JSON is YAML
			t.Fatal(err)
		}
		var want []crossing
		for _, x := range c.Crossings {
			want = append(want, crossing{x.Frame, x.Direction == "in"})
		}
		stdout, stderr, code := veil(t, nil, "count", "-quiet", "-crossings", "-occupancy", "-config", cfg, filepath.Join(dir, c.File))
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.File, code, stderr)
		}
		// The labels' frames are good to about half a second.
		s := scoreCount(stdout, want, c.Occupancy, int(max(c.FPS, 10)/2))
		t.Logf("%s: %d counted, %d labelled, %d matched; in %+d, out %+d; occupancy error %.2f a sample (%d samples)",
			c.File, s.counted, s.labelled, s.matched, s.inErr, s.outErr, s.occErr/float64(max(s.occSamples, 1)), s.occSamples)
		if d := absInt(s.inErr) + absInt(s.outErr); d > 1 {
			t.Errorf("%s: off by %d crossings (at most 1)", c.File, d)
		}
		total.matched += s.matched
		total.counted += s.counted
		total.labelled += s.labelled
		total.occErr += s.occErr
		total.occSamples += s.occSamples
	}
	precision := float64(total.matched) / float64(max(total.counted, 1))
	recall := float64(total.matched) / float64(max(total.labelled, 1))
	occ := total.occErr / float64(max(total.occSamples, 1))
	t.Logf("all clips: precision %.2f, recall %.2f, occupancy error %.2f a sample", precision, recall, occ)
	// Floors from the measured figures (docs/counting.md).
	if precision < 0.95 || recall < 0.95 || occ > 0.4 {
		t.Errorf("precision %.2f (floor 0.95), recall %.2f (floor 0.95), occupancy error %.2f (at most 0.4)", precision, recall, occ)
	}
}

// TestStandingPeopleStayCounted holds one real frame of vtest.avi still for
// a minute (people standing, as at a sales table) and checks that the
// detector method counts them all the minute through. (The motion method
// learns them into the background and counts nobody: docs/counting.md.)
func TestStandingPeopleStayCounted(t *testing.T) {
	if testing.Short() {
		t.Skip("obscures and counts a minute of video")
	}
	clip := filepath.Join(t.TempDir(), "still.mp4")
	if out, err := exec.Command("ffmpeg", "-v", "error", "-i", "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
		"-vf", "select=eq(n\\,300),loop=loop=299:size=1:start=0,setpts=N/5/TB", "-r", "5", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", clip).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "zone.yaml")
	const method = "detector"
	zone := fmt.Sprintf("method: %s\nzones:\n  - id: all\n    polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]\n", method)
	if err := os.WriteFile(cfg, []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := veil(t, nil, "count", "-quiet", "-occupancy", "-config", cfg, clip)
	if code != 0 {
		t.Fatalf("%s: exit %d: %s", method, code, stderr)
	}
	// The frame holds 6 people (and a post, a cone and a bollard that the
	// detector boxes weakly). Tracks are confirmed on the second detection
	// and a still thing is dropped after 2 s; from 3 s on every measure
	// must count the people, and only them, give or take one.
	var first, last, least, most int
	n := 0
	for _, m := range occupancyRe.FindAllStringSubmatch(stdout, -1) {
		f, _ := strconv.Atoi(m[1])
		p, _ := strconv.Atoi(m[2])
		if f < 15 {
			continue
		}
		if n == 0 {
			first, least, most = p, p, p
		}
		least, most, last = min(least, p), max(most, p), p
		n++
	}
	t.Logf("%s: %d measures over a minute; people %d at the start, %d at the end, %d at the least, %d at the most", method, n, first, last, least, most)
	if n < 200 || least < 5 || most > 7 {
		t.Errorf("%s: %d measures, %d people at the least, %d at the most (6 in the picture)\n%s",
			method, n, least, most, strings.Join(strings.Split(stdout, "\n")[:min(20, strings.Count(stdout, "\n"))], "\n"))
	}
}
