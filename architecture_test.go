package veil_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/veilproject/veil"

type pkg struct {
	ImportPath string
	Imports    []string
	GoFiles    []string
	CgoFiles   []string
	Dir        string
}

func listPackages(t *testing.T) map[string]pkg {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	pkgs := map[string]pkg{}
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")] = p
	}
	return pkgs
}

func imports(p pkg, path string) bool {
	for _, i := range p.Imports {
		if i == path || i == mod+"/"+path {
			return true
		}
	}
	return false
}

// TestPrivacyBoundaries checks the import graph that carries the privacy
// invariant: un-obscured frames (frame) flow only from ingest to
// blur, through the camera pipeline that never reads their pixels; native
// code is only in blur/detect (OpenCV and OpenVINO), ingest/decode and
// pipeline/output/encode (libav, through go-astiav, and one file of
// libyuv calls each), and cmd/veil's process settings (mallopt).
func TestPrivacyBoundaries(t *testing.T) {
	pkgs := listPackages(t)
	rawAllowed := map[string]bool{"ingest": true, "blur": true, "pipeline": true}
	pixField := regexp.MustCompile(`\.Pix\b[^(]`)
	for name, p := range pkgs {
		if imports(p, "frame") && !rawAllowed[name] {
			t.Errorf("%s imports frame (un-obscured frames); only ingest, blur and the camera pipeline may", name)
		}
		if len(p.CgoFiles) > 0 && name != "blur/detect" && !(name == "cmd/veil" && slices.Equal(p.CgoFiles, []string{"process.go"})) &&
			!((name == "pipeline/output/encode" || name == "ingest/decode") && slices.Equal(p.CgoFiles, []string{"yuv.go"})) {
			t.Errorf("%s has cgo in %v; native code stays in blur/detect (and cmd/veil/process.go, libyuv's calls in ingest/decode/yuv.go and pipeline/output/encode/yuv.go)", name, p.CgoFiles)
		}
		if imports(p, "github.com/asticode/go-astiav") && name != "ingest/decode" && name != "pipeline/output/encode" {
			t.Errorf("%s imports go-astiav; libav stays in ingest/decode (raw frames in) and pipeline/output/encode (obscured frames out)", name)
		}
	}
	// The camera pipeline hands raw frames from a source to blur; it never
	// touches their pixels.
	for _, f := range pkgs["pipeline"].GoFiles {
		b, _ := os.ReadFile(filepath.Join(pkgs["pipeline"].Dir, f))
		if pixField.Match(b) {
			t.Errorf("pipeline/%s reads a raw frame's Pix", f)
		}
	}
}

// TestConfigNeedsNoDetector: reading a configuration must not link the
// cgo detectors (OpenCV, OpenVINO, ONNX Runtime), nor any stage.
func TestConfigNeedsNoDetector(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./pipeline/config").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, no := range []string{mod + "/blur/detect", "github.com/yalue/onnxruntime_go", mod + "/ingest"} {
			if dep == no {
				t.Errorf("pipeline/config depends on %s", dep)
			}
		}
	}
}

// TestArrowsPointOneWay checks the layout: every veil package may import
// only the veil packages listed for it (by prefix), so no import runs back
// up. From the bottom: base types; the stages (ingest, blur, counter);
// the two flows, video outputs and counts, which never import each other;
// the config; the camera pipeline; cmd.
func TestArrowsPointOneWay(t *testing.T) {
	base := []string{"frame", "queue", "footfall", "rtcconf"}
	allowed := map[string][]string{
		// Base types, at the bottom: every stage may import them, they
		// import no stage.
		"frame":              nil,
		"queue":              nil,
		"footfall":           nil,
		"rtcconf":            nil,
		"rtcconf/netnstest":  nil, // a test helper: namespaces for WebRTC peers
		"ingest/decode":      nil,
		"pipeline/wallclock": nil,
		// The stages.
		"ingest":        append([]string{"ingest/decode"}, base...),
		"blur":          {"frame"},
		"blur/detect":   {"blur", "blur/detect/detectconf"},
		"blur/engine":   {"blur"},
		"blur/blurtest": {"blur"}, // test files only (below)
		"counter":       append([]string{"blur"}, base...),
		// The two flows: video outputs and counts, which never import
		// each other.
		"pipeline/output/sink":              {"blur"},
		"pipeline/output/encode":            {"blur"},
		"pipeline/output/record":            {"blur", "pipeline/output/encode", "pipeline/output/record/recordconf", "pipeline/wallclock"},
		"pipeline/output/record/recordconf": nil,
		"pipeline/output/live":              {"blur", "pipeline/output/encode", "pipeline/output/record", "rtcconf"},
		"pipeline/counts/":                  {"queue", "footfall", "pipeline/counts/"},
		// Which box serves which camera: Kafka group membership.
		"pipeline/placement": {"footfall", "pipeline/counts/kafkaconf"},
		"pipeline/console":   {"pipeline/output/live", "pipeline/output/record/recordconf", "rtcconf", "footfall", "pipeline/wallclock"},
		// The config names every part's settings, but not the cgo
		// detectors: blur/detect/detectconf holds their settings.
		"blur/detect/detectconf": nil,
		"pipeline/config":        {"blur", "blur/detect/detectconf", "counter", "pipeline/output/record/recordconf", "pipeline/console", "footfall", "pipeline/counts/kafkaconf", "pipeline/counts/signing"},
		// The assembler, and main.
		"pipeline":       append([]string{"blur", "blur/", "counter", "ingest", "pipeline/"}, base...),
		"cmd/veil":       {""},
		"dashboards/gen": nil,
		"":               nil,
	}
	rule := func(name string) ([]string, bool) {
		if r, ok := allowed[name]; ok {
			return r, true
		}
		for prefix, r := range allowed {
			if strings.HasSuffix(prefix, "/") && strings.HasPrefix(name, prefix) {
				return r, true
			}
		}
		return nil, false
	}
	for name, p := range pkgs(t) {
		if imports(p, "blur/blurtest") {
			t.Errorf("%s imports blur/blurtest outside its tests: a detector that finds no face must not reach a camera", name)
		}
		ok, known := rule(name)
		if !known {
			t.Errorf("%s has no rule in TestArrowsPointOneWay: say what it may import", name)
			continue
		}
	imports:
		for _, imp := range p.Imports {
			to, isVeil := strings.CutPrefix(imp, mod+"/")
			if !isVeil {
				continue
			}
			for _, a := range ok {
				if to == a || (strings.HasSuffix(a, "/") && strings.HasPrefix(to, a)) || a == "" {
					continue imports
				}
			}
			t.Errorf("%s imports %s: that arrow points back up (allowed: %v)", name, to, ok)
		}
	}
}

var pkgs = listPackages

// TestNoInitOrGlobals keeps wiring explicit: no init() side effects and no
// promauto or default-registry metrics anywhere.
func TestNoInitOrGlobals(t *testing.T) {
	bad := regexp.MustCompile(`(?m)^func init\(\)|promauto\.|prometheus\.MustRegister\(|prometheus\.DefaultRegisterer|slog\.SetDefault`)
	for _, p := range listPackages(t) {
		for _, f := range p.GoFiles {
			b, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if m := bad.Find(b); m != nil {
				t.Errorf("%s/%s: %s", p.ImportPath, f, m)
			}
		}
	}
}

// TestRawFrameCannotReachASink proves the invariant at compile time: code
// that hands an un-obscured frame to a sink, or forges an obscured one,
// does not build.
func TestRawFrameCannotReachASink(t *testing.T) {
	cases := map[string]string{
		"raw to video sink": `v, _ := sink.NewVideo(context.Background(), "x.mp4", sink.VideoOptions{})
	v.Write(frame.NewRaw(frame.Meta{}, 2, 2))`,
		"raw to image sink": `sink.WriteImage("x.png", frame.NewRaw(frame.Meta{}, 2, 2))`,
		"forged frame":      `f := &blur.Frame{}; _ = f; _ = blur.Frame{pix: []byte{1}}`,
		"converted frame":   `_ = (*blur.Frame)(frame.NewRaw(frame.Meta{}, 2, 2))`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			dir, err := os.MkdirTemp(".", ".compilecheck-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			src := `package main

import (
	"context"

	"` + mod + `/blur"
	"` + mod + `/frame"
	"` + mod + `/pipeline/output/sink"
)

var _ = context.Background
var _ = blur.ModeFill
var _ = sink.ErrNotObscured
var _ = frame.NewRaw

func main() {
	` + body + `
}
`
			if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("go", "build", "-o", os.DevNull, "./"+dir).CombinedOutput()
			if err == nil {
				t.Fatalf("compiled: %s", body)
			}
			if !regexp.MustCompile(`cannot use|unknown field|cannot convert|unexported`).Match(out) {
				t.Errorf("failed for another reason: %s", out)
			}
		})
	}
}

// TestMainOnlyWires keeps cmd/veil small: flags, config and wiring, no
// pipeline assembly (that is pipeline.Camera and pipeline.Service).
func TestMainOnlyWires(t *testing.T) {
	files, _ := filepath.Glob("cmd/veil/*.go")
	total := 0
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		total += strings.Count(string(b), "\n")
		af, err := parser.ParseFile(fset, f, b, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok {
				if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > 60 {
					t.Errorf("%s: %s is %d lines (at most 60)", f, fn.Name.Name, n)
				}
			}
		}
		for _, imp := range af.Imports {
			if p := strings.Trim(imp.Path.Value, `"`); p == mod+"/queue" || p == mod+"/frame" || p == "golang.org/x/sync/errgroup" {
				t.Errorf("%s imports %s: main wires, it does not assemble pipelines", f, p)
			}
		}
	}
	if total > 600 {
		t.Errorf("cmd/veil has %d non-test lines (at most 600)", total)
	}
}
