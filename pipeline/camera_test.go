package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/blurtest"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/frame"
	"github.com/veilproject/veil/queue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// synthetic is a source of n grey 64x48 frames, 100 ms apart in stream
// time, pushed every interval; after the last it waits for ctx if hold.
type synthetic struct {
	n        int
	interval time.Duration
	hold     bool
	failAt   int // > 0: fail with errBroken before frame failAt
	pushed   atomic.Int64
}

var errBroken = errors.New("input broken")

func (s *synthetic) Run(ctx context.Context, out *queue.Queue[*frame.Raw]) error {
	defer out.Close()
	t0 := time.Now()
	for i := 0; i < s.n; i++ {
		if s.failAt > 0 && i == s.failAt {
			return errBroken
		}
		pts := time.Duration(i) * 100 * time.Millisecond
		raw := frame.NewRaw(frame.Meta{Camera: "c", Seq: uint64(i), PTS: pts, Captured: t0.Add(pts)}, 64, 48)
		if err := out.Push(ctx, raw); err != nil {
			return err
		}
		s.pushed.Add(1)
		if s.interval > 0 {
			select {
			case <-time.After(s.interval):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if s.hold {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// collect is an output that keeps count, optionally taking delay per frame
// or blocking until released.
type collect struct {
	name    string
	delay   time.Duration
	block   chan struct{}
	mu      sync.Mutex
	frames  int
	closes  int
	aborted bool
}

func (c *collect) Name() string { return c.name }
func (c *collect) Write(*blur.Frame) error {
	if c.block != nil {
		<-c.block
	}
	time.Sleep(c.delay)
	c.mu.Lock()
	c.frames++
	c.mu.Unlock()
	return nil
}
func (c *collect) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes++
	c.aborted = ctx.Err() != nil
	return nil
}
func (c *collect) got() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

func testMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func counting() *counter.Config {
	// The pipeline's mechanics, with the counter that needs no person
	// detector (the detector method is tested in counter and cmd/veil).
	return &counter.Config{Method: counter.MethodMotion, Lines: []counter.Line{{ID: "door", From: counter.Point{0.5, 0}, To: counter.Point{0.5, 1}}}, Window: time.Second}
}

// TestOutputsDoNotWaitForEachOther: with the counts path stuck (nobody
// takes events, as when Kafka is down and the spool full) and one output
// stuck, the other output still gets every frame, live.
func TestOutputsDoNotWaitForEachOther(t *testing.T) {
	m, _ := testMetrics(t)
	events := queue.New[footfall.Event](1, queue.Block, nil) // never read
	rec := &collect{name: "record"}
	stuck := &collect{name: "live", block: make(chan struct{})}
	src := &synthetic{n: 60, interval: 5 * time.Millisecond, hold: true}
	cam, err := NewCamera(CameraConfig{ID: "c", Live: true, Counting: counting(), Drain: 300 * time.Millisecond},
		CameraDeps{Source: src, Detector: blurtest.NoFaces{}, Outputs: []Output{rec, stuck}, Events: events, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cam.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for (src.pushed.Load() < 60 || rec.got() < 55) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := rec.got(); n < 55 {
		t.Errorf("the recorder got %d of 60 frames while the counter and another output were stuck", n)
	}
	if v := testutil.ToFloat64(m.dropped.WithLabelValues("c", "live", DropQueueFull)); v < 40 {
		t.Errorf("the stuck output's queue dropped %v frames, want its backlog dropped", v)
	}
	if v := testutil.ToFloat64(m.dropped.WithLabelValues("c", "counter", DropQueueFull)); v < 20 {
		t.Errorf("the stuck counter's queue dropped %v frames", v)
	}
	close(stuck.block)
	// On shutdown the counter cannot deliver its last window: Run gives up
	// after Drain and says which event was not delivered.
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, counter.ErrUndelivered) {
			t.Errorf("Run: %v, want the undelivered event reported", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within its drain time")
	}
	if rec.closes != 1 || stuck.closes != 1 || rec.aborted {
		t.Errorf("closes %d %d, recorder abandoned %v", rec.closes, stuck.closes, rec.aborted)
	}
	delivered := testutil.ToFloat64(m.delivered.WithLabelValues("c"))
	if dropped := testutil.ToFloat64(m.dropped.WithLabelValues("c", "blur", DropQueueFull)); delivered+dropped != 60 || delivered < 40 {
		t.Errorf("veil_pipeline_frames_delivered_total = %v and %v dropped before blur, want 60 in all (%+v)", delivered, dropped, cam.Summary())
	}
}

// TestShutdownDrains: when ctx ends, frames already decoded are still
// obscured and written, the last count window is flushed, and outputs are
// finished (not abandoned).
func TestShutdownDrains(t *testing.T) {
	m, _ := testMetrics(t)
	events := queue.New[footfall.Event](64, queue.Block, nil)
	rec := &collect{name: "record", delay: 20 * time.Millisecond} // slower than the source: a backlog
	src := &synthetic{n: 25, hold: true}
	cam, err := NewCamera(CameraConfig{ID: "c", Counting: counting()},
		CameraDeps{Source: src, Detector: blurtest.NoFaces{}, Outputs: []Output{rec}, Events: events, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cam.Run(ctx) }()
	for src.pushed.Load() < 25 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if got := rec.got(); got != 25 || rec.closes != 1 || rec.aborted {
		t.Errorf("recorded %d of 25 decoded frames, closed %d, abandoned %v", got, rec.closes, rec.aborted)
	}
	events.Close()
	var evs []footfall.Event
	for e := range events.C() {
		evs = append(evs, e)
	}
	// 25 frames at 100 ms are 2.5 s: two full windows and the flushed half.
	if len(evs) != 3 || evs[2].Seq != 2 {
		t.Errorf("events %+v: want 3, the last flushed on shutdown", evs)
	}
	if s := cam.Summary(); s.Frames != 25 || s.Dropped != 0 {
		t.Errorf("summary %+v", s)
	}
}

// TestJobLeavesNoPartialOutput: a job whose input breaks abandons its
// outputs instead of finishing them, and reports the input's error.
func TestJobLeavesNoPartialOutput(t *testing.T) {
	for _, tc := range []struct {
		name    string
		src     *synthetic
		cancel  bool
		wantErr error
		abandon bool
	}{
		{"complete", &synthetic{n: 10}, false, nil, false},
		{"broken input", &synthetic{n: 10, failAt: 5}, false, errBroken, true},
		{"cancelled", &synthetic{n: 1000, interval: time.Millisecond}, true, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := testMetrics(t)
			out := &collect{name: "file"}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			var evs int
			sum, err := RunJob(ctx, CameraConfig{ID: "c", Counting: counting()},
				CameraDeps{Source: tc.src, Detector: blurtest.NoFaces{}, Outputs: []Output{out}, Metrics: m},
				func(footfall.Event) error { evs++; return nil })
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("err %v, want %v", err, tc.wantErr)
			}
			if out.closes != 1 || out.aborted != tc.abandon {
				t.Errorf("closed %d times, abandoned %v, want %v", out.closes, out.aborted, tc.abandon)
			}
			if !tc.abandon && (sum.Frames != 10 || evs != 1) {
				t.Errorf("summary %+v, %d events", sum, evs)
			}
		})
	}
}

// jitter answers no faces after a random few milliseconds, so that calls
// made together finish in any order. Safe for concurrent use.
type jitter struct{ calls, peak, in atomic.Int32 }

func (j *jitter) Name() string { return "jitter" }
func (j *jitter) Detect(ctx context.Context, _ blur.Image) ([]blur.Detection, error) {
	j.calls.Add(1)
	n := j.in.Add(1)
	defer j.in.Add(-1)
	for p := j.peak.Load(); n > p && !j.peak.CompareAndSwap(p, n); p = j.peak.Load() {
	}
	time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
	return nil, nil
}

// sequence is an output that records the order of the frames it gets.
type sequence struct {
	mu   sync.Mutex
	seqs []uint64
}

func (s *sequence) Name() string { return "file" }
func (s *sequence) Write(f *blur.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seqs = append(s.seqs, f.Meta().Seq)
	return nil
}
func (s *sequence) Close(context.Context) error { return nil }

// TestJobDetectsAheadInOrder: a file job in full search with three
// detector calls at a time detects frames side by side, answered in any
// order, and still writes every frame once, in order.
func TestJobDetectsAheadInOrder(t *testing.T) {
	m, _ := testMetrics(t)
	det := &jitter{}
	out := &sequence{}
	const n = 60
	sum, err := RunJob(context.Background(), CameraConfig{ID: "c", Blur: blur.Config{Search: blur.SearchFull}},
		CameraDeps{Source: &synthetic{n: n}, Detector: det, Parallel: 3, Outputs: []Output{out}, Metrics: m}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Frames != n || sum.FailClosed != 0 || int(det.calls.Load()) != n+1 { // and the warm-up
		t.Errorf("summary %+v, %d detector calls", sum, det.calls.Load())
	}
	for i, seq := range out.seqs {
		if seq != uint64(i) {
			t.Fatalf("frame %d written as the %dth: %v", seq, i, out.seqs)
		}
	}
	if len(out.seqs) != n {
		t.Errorf("%d frames written, want %d", len(out.seqs), n)
	}
	if p := det.peak.Load(); p < 2 {
		t.Errorf("at most %d frames detected at once: the job did not detect ahead", p)
	}
}

func TestNewCameraNamesWhatIsMissing(t *testing.T) {
	m, _ := testMetrics(t)
	for _, tc := range []struct {
		name string
		cfg  CameraConfig
		deps CameraDeps
		want string
	}{
		{"source", CameraConfig{ID: "c"}, CameraDeps{Detector: blurtest.NoFaces{}, Metrics: m}, "no source"},
		{"detector", CameraConfig{ID: "c"}, CameraDeps{Source: &synthetic{}, Metrics: m}, "no detector"},
		{"events", CameraConfig{ID: "c", Counting: counting()}, CameraDeps{Source: &synthetic{}, Detector: blurtest.NoFaces{}, Metrics: m}, "events queue"},
		{"blur", CameraConfig{ID: "c", Blur: blur.Config{MosaicCells: 30}}, CameraDeps{Source: &synthetic{}, Detector: blurtest.NoFaces{}, Metrics: m}, "blur.mosaic_cells"},
	} {
		if _, err := NewCamera(tc.cfg, tc.deps); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// stamped is a live source whose frames are every byte their sequence
// number, in buffers given back by frames done with (frame.Reuse).
type stamped struct{ n int }

func (s *stamped) Run(ctx context.Context, out *queue.Queue[*frame.Raw]) error {
	defer out.Close()
	for i := range s.n {
		raw := frame.Reuse(frame.Meta{Camera: "c", Seq: uint64(i), PTS: time.Duration(i) * 10 * time.Millisecond, Captured: time.Now()}, 64, 48)
		for j := range raw.Pix {
			raw.Pix[j] = byte(i)
		}
		if err := out.Push(ctx, raw); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// stampCheck is an output that reads each frame's pixels twice, a while
// apart, and counts frames whose pixels were not all their stamp: a
// buffer handed back to the source while this output still read it.
type stampCheck struct {
	delay   time.Duration
	frames  atomic.Int32
	torn    atomic.Int32
	invalid atomic.Int32
}

func (s *stampCheck) Name() string { return "check" }
func (s *stampCheck) Write(f *blur.Frame) error {
	s.frames.Add(1)
	if !f.Valid() {
		s.invalid.Add(1)
		return nil
	}
	want := byte(f.Meta().Seq)
	for range 2 {
		for _, v := range f.Pix() {
			if v != want {
				s.torn.Add(1)
				return nil
			}
		}
		time.Sleep(s.delay)
	}
	return nil
}
func (s *stampCheck) Close(context.Context) error { return nil }

// TestRecycledBuffersAreNotReadAfterReuse: obscured frames' buffers go
// back to the source once every output and the counter are done with
// them; a slow output and a fast one, frames dropped on the way, and no
// output ever sees a frame's pixels change under it.
func TestRecycledBuffersAreNotReadAfterReuse(t *testing.T) {
	m, _ := testMetrics(t)
	events := queue.New[footfall.Event](1024, queue.Block, nil)
	slow, fast := &stampCheck{delay: 3 * time.Millisecond}, &stampCheck{}
	cam, err := NewCamera(CameraConfig{ID: "c", Live: true, Counting: counting()},
		CameraDeps{Source: &stamped{n: 400}, Detector: blurtest.NoFaces{}, Outputs: []Output{slow, fast}, Events: events, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range events.C() {
		}
	}()
	if err := cam.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	events.Close()
	for name, o := range map[string]*stampCheck{"slow": slow, "fast": fast} {
		if o.torn.Load() != 0 || o.invalid.Load() != 0 {
			t.Errorf("%s output: %d of %d frames changed while read, %d without pixels", name, o.torn.Load(), o.frames.Load(), o.invalid.Load())
		}
	}
	if slow.frames.Load() == 0 || fast.frames.Load() < slow.frames.Load() {
		t.Errorf("frames: slow %d, fast %d", slow.frames.Load(), fast.frames.Load())
	}
	t.Logf("slow output %d frames, fast %d, of 400", slow.frames.Load(), fast.frames.Load())
}
