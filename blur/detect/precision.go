package detect

import (
	"context"
	"fmt"
	"image"
	"log/slog"
	"sync"
	"time"

	"github.com/veilproject/veil/blur"
)

// Precision choice for precision: auto. OpenVINO picks bf16 wherever the
// CPU has AVX512_BF16, but whether bf16 is faster depends on the chip: on
// the 2-core AMD EPYC this project was first measured on it was 3.75x
// faster than f32 at 720p (32 against 120 ms), on a 2-core Intel Xeon
// without AMX (avx512_bf16 only) it was 20-35% slower (116 against 95 ms
// at 720p, 30 against 23 at 640x384). So auto measures: it times OpenVINO's
// own choice against f32 on one picture and keeps the reduced precision
// only where it is clearly faster. f32 is the reference the recall floors
// were set with; bf16 keeps them with its threshold margin
// (TestReducedPrecisionKeepsRecall), so either choice keeps recall.

// precisionProbe is the picture size timed: between the crops region
// search mostly runs (160-224 px) and a 720p sweep, whose ratios bracket
// it on the Xeon above (bf16 0.91x and 0.81x as fast as f32 there).
var precisionProbe = image.Pt(320, 320)

// precisionRuns is how many timed inferences each precision gets; the
// fastest counts, since a busy machine only ever makes a run slower.
const precisionRuns = 5

// reducedPrecisionGain is how much faster the reduced precision must be
// to be chosen: within noise, f32 (the reference) wins.
const reducedPrecisionGain = 0.9

// PrecisionChoice is what precision: auto chose, and why.
type PrecisionChoice struct {
	Precision string        // "f32" or OpenVINO's reduced choice ("bf16")
	Offered   string        // what OpenVINO runs when left to choose
	F32, Auto time.Duration // fastest of precisionRuns on the probe picture
}

var precisionMemo struct {
	sync.Mutex
	done map[int]PrecisionChoice // by inference threads
}

// ChoosePrecision measures, once per process and thread count, whether
// OpenVINO's own precision choice is faster than f32 on this CPU.
func ChoosePrecision(libDir string, model []byte, threads int) (PrecisionChoice, error) {
	precisionMemo.Lock()
	defer precisionMemo.Unlock()
	if c, ok := precisionMemo.done[threads]; ok {
		return c, nil
	}
	ch, err := choosePrecision(libDir, model, threads)
	if err != nil {
		return PrecisionChoice{}, err
	}
	if precisionMemo.done == nil {
		precisionMemo.done = map[int]PrecisionChoice{}
	}
	precisionMemo.done[threads] = ch
	return ch, nil
}

func choosePrecision(libDir string, model []byte, threads int) (PrecisionChoice, error) {
	img := blur.Image{Width: precisionProbe.X, Height: precisionProbe.Y, Pix: make([]byte, precisionProbe.X*precisionProbe.Y*3)}
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7 / 3) // not flat: a flat picture could take shortcuts a real one cannot
	}
	var dets [2]*OpenVINOCenterFace // OpenVINO's choice, f32
	for i, prec := range []string{"", "f32"} {
		d, err := NewOpenVINOCenterFace(libDir, model, 0.5, 1, prec, threads, 1)
		if err != nil {
			return PrecisionChoice{}, err
		}
		defer d.Close()
		dets[i] = d
	}
	infer := func(d *OpenVINOCenterFace) (time.Duration, error) {
		start := time.Now()
		_, err := d.Detect(context.Background(), img)
		return time.Since(start), err
	}
	// Two warm-up runs each (compiling, then the first inferences of a
	// process ran 1.5x slow), then turns taken, so that a moment of load
	// falls on both.
	for _, d := range dets {
		for range 2 {
			if _, err := infer(d); err != nil {
				return PrecisionChoice{}, fmt.Errorf("timing the detector's precision: %w", err)
			}
		}
	}
	ch := PrecisionChoice{Precision: "f32", Offered: dets[0].Precision(), Auto: time.Hour, F32: time.Hour}
	if ch.Offered == "f32" {
		return ch, nil
	}
	for range precisionRuns {
		for i, best := range []*time.Duration{&ch.Auto, &ch.F32} {
			took, err := infer(dets[i])
			if err != nil {
				return PrecisionChoice{}, fmt.Errorf("timing the detector's precision: %w", err)
			}
			*best = min(*best, took)
		}
	}
	if float64(ch.Auto) <= reducedPrecisionGain*float64(ch.F32) {
		ch.Precision = ch.Offered
	}
	return ch, nil
}

// logPrecision says what auto chose, with the figures it chose on.
func logPrecision(log *slog.Logger, ch PrecisionChoice) {
	if ch.Offered == "f32" {
		log.Info("detector precision: f32 (OpenVINO offers no reduced precision on this CPU)", "component", "detect")
		return
	}
	log.Info("detector precision chosen by measurement", "component", "detect", "precision", ch.Precision,
		"f32_ms", float64(ch.F32.Microseconds())/1000, ch.Offered+"_ms", float64(ch.Auto.Microseconds())/1000,
		"probe", fmt.Sprintf("%dx%d", precisionProbe.X, precisionProbe.Y))
}
