package detect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keepChoicesIn points precision: auto's memory at a fresh file, empties
// the in-process memo, and counts the measurements made through measure
// (nil: the real one).
func keepChoicesIn(t *testing.T, file string, measure func(string, []byte, []byte, int) (PrecisionChoice, error)) *int {
	t.Helper()
	oldFile, oldMeasure := precisionFile, measurePrecision
	if measure == nil {
		measure = choosePrecision
	}
	n := new(int)
	precisionFile = func() string { return file }
	measurePrecision = func(lib string, m, m8 []byte, threads int) (PrecisionChoice, error) {
		*n++
		return measure(lib, m, m8, threads)
	}
	forgetPrecisionMemo()
	t.Cleanup(func() {
		precisionFile, measurePrecision = oldFile, oldMeasure
		forgetPrecisionMemo()
	})
	return n
}

func forgetPrecisionMemo() {
	precisionMemo.Lock()
	precisionMemo.done = nil
	precisionMemo.Unlock()
}

// writeInt8 puts an int8 model file with a valid checksum file in dir.
func writeInt8(t *testing.T, dir string, content []byte) {
	t.Helper()
	sum := sha256.Sum256(content)
	side := fmt.Sprintf("%s  %s\nfrom %s\nrecipe %s\n", hex.EncodeToString(sum[:]), Int8Model, CenterFaceSHA256, Int8Recipe)
	if err := os.WriteFile(filepath.Join(dir, Int8Model), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, Int8Model+".sha256"), []byte(side), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPrecisionChoiceIsRemembered: a choice measured once is reused by
// the next process on the same machine, and measured again whenever what
// it was measured on changes (threads, runtime, either model) or its file
// is unreadable; a file that cannot be written costs a measurement per
// process, not an error. The measurement itself is a stand-in here (the
// real one is TestAutoPrecisionIsNotSlower and
// TestRememberedPrecisionRuns); what is tested is the bookkeeping.
func TestPrecisionChoiceIsRemembered(t *testing.T) {
	if cpuIdentity() == "" {
		t.Skip("no /proc/cpuinfo: choices are not kept")
	}
	dir := t.TempDir()
	lib, models, other := filepath.Join(dir, "runtime"), filepath.Join(dir, "models"), filepath.Join(dir, "elsewhere")
	for _, d := range []string{lib, models, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wheel := func(sum string) {
		if err := os.WriteFile(filepath.Join(lib, ".wheel-sha256"), []byte(sum+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wheel("aaaa")
	file := filepath.Join(dir, "cache", "precision.json")
	answer := "bf16"
	n := keepChoicesIn(t, file, func(_ string, _, m8 []byte, _ int) (PrecisionChoice, error) {
		p := answer
		if m8 != nil {
			p = "int8"
		}
		return PrecisionChoice{Precision: p, Times: map[string]time.Duration{"f32": 10 * time.Millisecond, p: 5 * time.Millisecond}}, nil
	})
	model := []byte("f32 model")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	steps := []struct {
		name     string
		change   func()
		threads  int
		model    []byte
		measured bool // a new measurement is expected
		want     string
		models   string // the model directory, if not models
		noInt8   string // in the choice's reason for leaving int8 out
	}{
		{name: "first process measures", measured: true, want: "bf16"},
		{name: "the next one remembers", want: "bf16"},
		{name: "other thread count", threads: 1, measured: true, want: "bf16"},
		{name: "first thread count still remembered", want: "bf16"},
		{name: "other f32 model", model: []byte("another f32 model"), measured: true, want: "bf16"},
		{name: "int8 model made", change: func() { writeInt8(t, models, []byte("int8 model")) }, measured: true, want: "int8"},
		{name: "int8 remembered", want: "int8"},
		{name: "int8 model remade", change: func() { writeInt8(t, models, []byte("int8 model, again")) }, measured: true, want: "int8"},
		{name: "int8 model gone: the choice made without it", change: func() { os.Remove(filepath.Join(models, Int8Model)) }, want: "bf16", noInt8: "model missing"},
		{name: "int8 model broken: the same choice, for today's reason", change: func() {
			os.WriteFile(filepath.Join(models, Int8Model), []byte("edited"), 0o644)
			os.WriteFile(filepath.Join(models, Int8Model+".sha256"), []byte("0000  "+Int8Model+"\n"), 0o644)
		}, want: "bf16", noInt8: "checksum file"},
		{name: "the same models in another directory", models: other, want: "bf16", noInt8: "model missing"},
		{name: "another runtime", change: func() { wheel("bbbb"); answer = "f32" }, measured: true, want: "f32"},
		{name: "a torn file", change: func() { os.WriteFile(file, []byte(`[{"key":`), 0o644) }, measured: true, want: "f32"},
		{name: "rewritten whole", want: "f32"},
		{name: "a choice that is no precision", change: func() {
			b, _ := os.ReadFile(file)
			os.WriteFile(file, bytes.Replace(b, []byte(`"precision": "f32"`), []byte(`"precision": "f64"`), 1), 0o644)
		}, measured: true, want: "f32"},
		{name: "nowhere to write", change: func() { os.RemoveAll(filepath.Dir(file)); os.WriteFile(filepath.Dir(file), nil, 0o644) }, measured: true, want: "f32"},
		{name: "so measured again", measured: true, want: "f32"},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		m := model
		if s.model != nil {
			m = s.model
		}
		dir := models
		if s.models != "" {
			dir = s.models
		}
		forgetPrecisionMemo()
		before := *n
		logs.Reset()
		ch, err := ChoosePrecision(lib, dir, m, s.threads, log)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if measured := *n > before; measured != s.measured {
			t.Errorf("%s: measured %v, want %v", s.name, measured, s.measured)
		}
		if ch.Precision != s.want {
			t.Errorf("%s: %s, want %s", s.name, ch.Precision, s.want)
		}
		if remembered := ch.From != ""; remembered == s.measured || (remembered && ch.From != file) {
			t.Errorf("%s: From %q", s.name, ch.From)
		}
		if !strings.Contains(ch.NoInt8, s.noInt8) {
			t.Errorf("%s: int8 left out because %q, want it to say %q", s.name, ch.NoInt8, s.noInt8)
		}
		if s.measured && ch.Measured.IsZero() {
			t.Errorf("%s: no time of measurement", s.name)
		}
		if s.name == "a torn file" && !strings.Contains(logs.String(), "unreadable") {
			t.Errorf("%s: the torn file was not reported:\n%s", s.name, logs.String())
		}
	}
	// Within a process the choice is measured or read once.
	forgetPrecisionMemo()
	before := *n
	for range 3 {
		if _, err := ChoosePrecision(lib, models, model, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	if *n-before != 1 {
		t.Errorf("one process measured %d times", *n-before)
	}
}

// TestRememberedPrecisionRuns: with the real runtime and models, a
// detector made by the next process (the in-process memo emptied) runs
// the precision the first measured, without measuring it again, and says
// so in its log.
func TestRememberedPrecisionRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the CNN in each precision")
	}
	dir := modelDir(t)
	n := keepChoicesIn(t, filepath.Join(t.TempDir(), "precision.json"), nil)
	first, err := New(Config{ModelDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := first.(*OpenVINONet).precision
	first.Close()
	if *n != 1 {
		t.Fatalf("the first detector measured %d times", *n)
	}
	forgetPrecisionMemo()
	var logs bytes.Buffer
	second, err := New(Config{ModelDir: dir}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if *n != 1 {
		t.Errorf("the second detector measured again")
	}
	if got := second.(*OpenVINONet).precision; got != want {
		t.Errorf("second detector runs %q, the first %q", got, want)
	}
	if !strings.Contains(logs.String(), "as measured before on this machine") {
		t.Errorf("log does not say the precision was remembered:\n%s", logs.String())
	}
}
