package detect

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/veilproject/veil/blur"
)

// Precision choice for precision: auto. OpenVINO picks bf16 wherever the
// CPU has AVX512_BF16, but whether bf16 is faster depends on the chip: on
// the 2-core AMD EPYC this project was first measured on it was much
// faster than f32, on a 2-core Intel Xeon without AMX (avx512_bf16 only)
// it was slower. The int8 model, where made, was faster than f32 on that
// Xeon (VNNI) and hardly faster than bf16 on the EPYC (measured:
// docs/benchmarks/figures-from-code-comments.md). So auto measures: it
// times each candidate on one picture and keeps a reduced precision only
// where it is clearly faster than f32. f32 is the reference the recall
// floors were set with; bf16 and int8 keep them with their threshold
// margins (TestReducedPrecisionKeepsRecall), so any choice keeps recall.

// precisionProbe is the picture size timed: between the crops region
// search mostly runs (160-224 px) and a 720p sweep, whose
// bf16-against-f32 speeds on the Xeon above bracket it (measured:
// docs/benchmarks/figures-from-code-comments.md).
var precisionProbe = image.Pt(320, 320)

// precisionRuns is how many timed inferences each candidate gets; the
// fastest counts, since a busy machine only ever makes a run slower.
const precisionRuns = 5

// reducedPrecisionGain is how much faster a reduced precision must be to
// be chosen: within noise, f32 (the reference) wins.
const reducedPrecisionGain = 0.9

// PrecisionChoice is what precision: auto chose, and why.
type PrecisionChoice struct {
	Precision string                   `json:"precision"` // "f32", "bf16" or "int8"
	Times     map[string]time.Duration `json:"times_ns"`  // fastest of precisionRuns per candidate, on the probe picture
	Offered   string                   `json:"offered"`   // what OpenVINO runs the f32 model in when left to choose
	NoInt8    string                   `json:"no_int8"`   // why int8 was not a candidate, if it was not
	Measured  time.Time                `json:"measured"`
	// From is the file the choice was remembered in, or "" where it
	// was measured by this process.
	From string `json:"-"`
}

var precisionMemo struct {
	sync.Mutex
	done map[string]PrecisionChoice // by thread count and model directory
}

// ChoosePrecision measures which of f32, OpenVINO's own choice for the
// f32 model (bf16 on CPUs with bf16 instructions) and the int8 model in
// modelDir (if there and intact) is fastest on this CPU: once per
// process, thread count and model directory, and once per machine where
// the choice can be kept (precision_store.go).
func ChoosePrecision(libDir, modelDir string, model []byte, threads int, log *slog.Logger) (PrecisionChoice, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := fmt.Sprint(threads, "\x00", modelDir)
	precisionMemo.Lock()
	defer precisionMemo.Unlock()
	if c, ok := precisionMemo.done[key]; ok {
		return c, nil
	}
	int8Model, err := ReadInt8Model(modelDir)
	noInt8 := ""
	if err != nil {
		noInt8 = err.Error()
		if !errors.Is(err, ErrModelMissing) {
			log.Warn("int8 face model unusable; auto chooses between f32 and bf16", "component", "detect", "err", err)
		}
	}
	file := precisionFile()
	pk, keep := newPrecisionKey(libDir, model, int8Model, threads)
	var ch PrecisionChoice
	found := false
	if keep {
		var old rememberedChoice
		old, found, err = recallChoice(file, pk)
		if err != nil {
			log.Warn("remembered detector precisions unreadable; measuring again", "component", "detect", "err", err)
		}
		if found {
			ch = old.Choice
			ch.From, ch.NoInt8 = file, noInt8
		}
	}
	if !found {
		if ch, err = measurePrecision(libDir, model, int8Model, threads); err != nil {
			return PrecisionChoice{}, err
		}
		ch.NoInt8, ch.Measured = noInt8, time.Now().UTC().Truncate(time.Second)
		if keep {
			if err := rememberChoice(file, rememberedChoice{Key: pk, Choice: ch}); err != nil {
				log.Info("cannot keep the measured detector precision; the next process measures again", "component", "detect", "err", err)
			}
		}
	}
	if precisionMemo.done == nil {
		precisionMemo.done = map[string]PrecisionChoice{}
	}
	precisionMemo.done[key] = ch
	return ch, nil
}

// measurePrecision is choosePrecision; a variable so that tests can count
// the measurements made.
var measurePrecision = choosePrecision

func choosePrecision(libDir string, model, int8Model []byte, threads int) (PrecisionChoice, error) {
	img := blur.Image{Width: precisionProbe.X, Height: precisionProbe.Y, Pix: make([]byte, precisionProbe.X*precisionProbe.Y*3)}
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7 / 3) // not flat: a flat picture could take shortcuts a real one cannot
	}
	type candidate struct {
		prec string
		d    *OpenVINONet
	}
	var cands []candidate
	add := func(m []byte, prec string) error {
		d, err := NewOpenVINOCenterFace(m, OpenVINOOptions{LibDir: libDir, Threshold: 0.5, Scale: 1, Precision: prec, Threads: threads, Lanes: 1})
		if err != nil {
			return err
		}
		cands = append(cands, candidate{prec, d})
		return nil
	}
	defer func() {
		for _, c := range cands {
			c.d.Close()
		}
	}()
	infer := func(d *OpenVINONet) (time.Duration, error) {
		start := time.Now()
		_, err := d.Detect(context.Background(), img)
		if err != nil {
			err = fmt.Errorf("timing the detector's precision: %w", err)
		}
		return time.Since(start), err
	}
	if err := add(model, "f32"); err != nil {
		return PrecisionChoice{}, err
	}
	if err := add(model, ""); err != nil {
		return PrecisionChoice{}, err
	}
	if int8Model != nil {
		if err := add(int8Model, "int8"); err != nil {
			return PrecisionChoice{}, err
		}
	}
	// Two warm-up runs each (compiling, then the first inferences of a
	// process ran slow; measured:
	// docs/benchmarks/figures-from-code-comments.md), then turns taken,
	// so that a moment of load falls on all.
	for _, c := range cands {
		for range 2 {
			if _, err := infer(c.d); err != nil {
				return PrecisionChoice{}, err
			}
		}
	}
	ch := PrecisionChoice{Precision: "f32", Offered: cands[1].d.Precision(), Times: map[string]time.Duration{}}
	if ch.Offered == "f32" {
		cands = append(cands[:1], cands[2:]...) // the same network twice
	} else {
		cands[1].prec = ch.Offered
	}
	for range precisionRuns {
		for _, c := range cands {
			took, err := infer(c.d)
			if err != nil {
				return PrecisionChoice{}, err
			}
			if best, ok := ch.Times[c.prec]; !ok || took < best {
				ch.Times[c.prec] = took
			}
		}
	}
	for _, c := range cands[1:] {
		if t := ch.Times[c.prec]; float64(t) <= reducedPrecisionGain*float64(ch.Times["f32"]) && t < ch.Times[ch.Precision] {
			ch.Precision = c.prec
		}
	}
	return ch, nil
}

// logPrecision says what auto chose, with the figures it chose on.
func logPrecision(log *slog.Logger, ch PrecisionChoice) {
	args := []any{"component", "detect", "precision", ch.Precision,
		"probe", fmt.Sprintf("%dx%d", precisionProbe.X, precisionProbe.Y)}
	var times []string
	for _, p := range []string{"f32", "bf16", "f16", "int8"} {
		if t, ok := ch.Times[p]; ok {
			times = append(times, fmt.Sprintf("%s %.1f ms", p, float64(t.Microseconds())/1000))
		}
	}
	args = append(args, "times", strings.Join(times, ", "))
	if ch.NoInt8 != "" {
		args = append(args, "int8", ch.NoInt8)
	}
	msg := "detector precision chosen by measurement"
	if ch.From != "" {
		msg = "detector precision as measured before on this machine"
		args = append(args, "measured", ch.Measured.Format(time.RFC3339), "file", ch.From)
	}
	log.Info(msg, args...)
}
