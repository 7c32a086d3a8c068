package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/frame"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// slowDetector takes d per frame and counts calls per image width (the
// tests give each camera its own width).
type slowDetector struct {
	d     time.Duration
	block chan struct{} // if set, every call waits for it
	panic bool
	mu    sync.Mutex
	calls map[int]int
}

func (s *slowDetector) Name() string { return "slow" }
func (s *slowDetector) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	if s.panic {
		panic("boom")
	}
	if s.block != nil {
		<-s.block
	}
	time.Sleep(s.d)
	s.mu.Lock()
	s.calls[img.Width]++
	s.mu.Unlock()
	return nil, nil
}

func newEngine(t *testing.T, lanes ...blur.Detector) (*Engine, *Metrics, func()) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(lanes, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e, m, func() {}
}

func run(e *Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func img(w int) blur.Image { return blur.Image{Width: w, Height: 2, Pix: make([]byte, w*2*3)} }

// TestOneCameraCannotStarveAnother: camera a asks without pause, with
// one request or six at a time (a frame's crops); camera b, asking now and
// then, is still answered within about two inferences, every time, with
// one lane or two.
func TestOneCameraCannotStarveAnother(t *testing.T) {
	for _, lanes := range []int{1, 2} {
		for _, hogs := range []int{1, 6} {
			t.Run(fmt.Sprintf("%d-lanes-%d-at-once", lanes, hogs), func(t *testing.T) { testNoStarving(t, lanes, hogs) })
		}
	}
}

func testNoStarving(t *testing.T, lanes, hogs int) {
	det := &slowDetector{d: 10 * time.Millisecond, calls: map[int]int{}}
	e, _, _ := newEngine(t, slices.Repeat([]blur.Detector{det}, lanes)...) // slowDetector is safe for concurrent use
	defer run(e)()
	a, b := e.For("a"), e.For("b")
	stop := make(chan struct{})
	var hog sync.WaitGroup
	for range hogs {
		hog.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a.Detect(context.Background(), img(10))
			}
		})
	}
	var worst time.Duration
	for range 20 {
		time.Sleep(15 * time.Millisecond)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := b.Detect(ctx, img(20))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(start))
	}
	close(stop)
	hog.Wait()
	if worst > 60*time.Millisecond {
		t.Errorf("camera b waited up to %s behind a camera that never pauses (inference 10 ms)", worst)
	}
	det.mu.Lock()
	defer det.mu.Unlock()
	if det.calls[20] != 20 || det.calls[10] < 20 {
		t.Errorf("calls %v", det.calls)
	}
}

// TestStalledEngineFailsFramesClosed: with the detector stuck on every
// lane, every camera's stage obscures its frames whole on the deadline,
// none is passed as vouched-for, and the camera left waiting for a lane
// has its requests expire.
func TestStalledEngineFailsFramesClosed(t *testing.T) {
	for _, lanes := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d-lanes", lanes), func(t *testing.T) { testStalled(t, lanes) })
	}
}

func testStalled(t *testing.T, lanes int) {
	det := &slowDetector{block: make(chan struct{}), calls: map[int]int{}}
	e, m, _ := newEngine(t, slices.Repeat([]blur.Detector{det}, lanes)...)
	stopEngine := run(e)
	bm, _ := blur.NewMetrics(prometheus.NewRegistry())
	var stages []*blur.Stage
	cams := []string{"a", "b", "c"}[:lanes+1]
	for _, cam := range cams {
		st, err := blur.New(blur.Config{Deadline: 50 * time.Millisecond}, blur.Deps{Camera: cam, Detector: e.For(cam), Metrics: bm})
		if err != nil {
			t.Fatal(err)
		}
		stages = append(stages, st)
	}
	for i := range 5 {
		for _, st := range stages {
			f, err := st.Obscure(context.Background(), frame.NewRaw(frame.Meta{Seq: uint64(i)}, 32, 32))
			if err != nil {
				t.Fatal(err)
			}
			if f.FailClosed() == "" {
				t.Fatal("a frame passed as vouched-for while the engine was stalled")
			}
		}
	}
	expired := 0.0
	for _, cam := range cams {
		expired += testutil.ToFloat64(m.expired.WithLabelValues(cam))
	}
	if expired < 1 {
		t.Errorf("no request expired with %d cameras stalled on %d lanes", len(cams), lanes)
	}
	close(det.block)
	for _, st := range stages {
		st.Close(context.Background())
	}
	stopEngine()
}

// TestPanicIsAnErrorAndStopIsClean: a panicking detector answers with an
// error (the stage fails closed), the engine keeps serving, and after Run
// ends every request gets ErrStopped.
func TestPanicIsAnErrorAndStopIsClean(t *testing.T) {
	det := &slowDetector{panic: true, calls: map[int]int{}}
	e, _, _ := newEngine(t, det)
	stop := run(e)
	h := e.For("a")
	for range 2 {
		if _, err := h.Detect(context.Background(), img(4)); err == nil {
			t.Fatal("a panic came back as an answer")
		}
	}
	stop()
	if _, err := h.Detect(context.Background(), img(4)); !errors.Is(err, ErrStopped) {
		t.Errorf("after stop: %v", err)
	}
}

// TestWithdrawnRequestIsNeverRun: a request whose deadline passed while
// queued is not run later.
func TestWithdrawnRequestIsNeverRun(t *testing.T) {
	det := &slowDetector{d: 100 * time.Millisecond, calls: map[int]int{}}
	e, _, _ := newEngine(t, det)
	defer run(e)()
	a, b := e.For("a"), e.For("b")
	var ran atomic.Bool
	go func() { a.Detect(context.Background(), img(10)); ran.Store(true) }()
	time.Sleep(20 * time.Millisecond) // a is being run
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := b.Detect(ctx, img(20)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("b: %v", err)
	}
	time.Sleep(150 * time.Millisecond)
	det.mu.Lock()
	defer det.mu.Unlock()
	if det.calls[20] != 0 || !ran.Load() {
		t.Errorf("calls %v, a answered %v", det.calls, ran.Load())
	}
}

// orderDetector records the widths it is asked about, in order.
type orderDetector struct {
	d     time.Duration
	mu    sync.Mutex
	order []int
}

func (o *orderDetector) Name() string { return "order" }
func (o *orderDetector) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	time.Sleep(o.d)
	o.mu.Lock()
	o.order = append(o.order, img.Width)
	o.mu.Unlock()
	return nil, nil
}

// TestCameraRequestsRunInOrder: a camera's requests queued together (a
// frame's crops) are run oldest first, and one withdrawn from the middle
// of its line is skipped, the rest still answered.
func TestCameraRequestsRunInOrder(t *testing.T) {
	det := &orderDetector{d: 30 * time.Millisecond}
	e, _, _ := newEngine(t, det)
	defer run(e)()
	a := e.For("a")
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		if i == 2 {
			ctx, cancel = context.WithTimeout(context.Background(), 40*time.Millisecond)
		}
		wg.Go(func() {
			defer cancel()
			_, errs[i] = a.Detect(ctx, img(10*(i+1)))
		})
		time.Sleep(2 * time.Millisecond) // queued in this order
	}
	wg.Wait()
	if !errors.Is(errs[2], context.DeadlineExceeded) {
		t.Errorf("the request whose deadline passed in the line: %v", errs[2])
	}
	for i, err := range errs {
		if i != 2 && err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if want := []int{10, 20, 40, 50}; !slices.Equal(det.order, want) {
		t.Errorf("ran %v, want %v", det.order, want)
	}
}

// laneDetector sleeps d per call and records how many of its calls
// overlapped (a lane must never be called concurrently) and how many calls
// of all lanes ran at once at most.
type laneDetector struct {
	d       time.Duration
	in      atomic.Int32 // calls of this lane in progress
	overlap atomic.Int32
	all     *atomic.Int32 // calls of every lane in progress
	peak    *atomic.Int32
}

func (l *laneDetector) Name() string { return "lane" }
func (l *laneDetector) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	if l.in.Add(1) > 1 {
		l.overlap.Add(1)
	}
	n := l.all.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	time.Sleep(l.d)
	l.all.Add(-1)
	l.in.Add(-1)
	return nil, nil
}

// TestLanesServeCamerasAtOnce: with two lanes, four cameras asking without
// pause are served two at a time, each lane by one worker only, and every
// camera gets its share.
func TestLanesServeCamerasAtOnce(t *testing.T) {
	var all, peak atomic.Int32
	lanes := []*laneDetector{{d: 5 * time.Millisecond, all: &all, peak: &peak}, {d: 5 * time.Millisecond, all: &all, peak: &peak}}
	e, _, _ := newEngine(t, lanes[0], lanes[1])
	defer run(e)()
	var wg sync.WaitGroup
	var answered [4]atomic.Int32
	deadline := time.Now().Add(300 * time.Millisecond)
	for i := range 4 {
		h := e.For(string(rune('a' + i)))
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if _, err := h.Detect(context.Background(), img(4)); err != nil {
					t.Error(err)
					return
				}
				answered[i].Add(1)
			}
		})
	}
	wg.Wait()
	if peak.Load() != 2 {
		t.Errorf("at most %d inferences ran at once with two lanes", peak.Load())
	}
	for i, l := range lanes {
		if n := l.overlap.Load(); n != 0 {
			t.Errorf("lane %d was called concurrently %d times", i, n)
		}
	}
	lo, hi := answered[0].Load(), answered[0].Load()
	for i := range answered {
		lo, hi = min(lo, answered[i].Load()), max(hi, answered[i].Load())
	}
	// 300 ms of two 5-ms lanes is about 120 answers, 30 a camera.
	if lo < 15 || hi > 2*lo+2 {
		t.Errorf("answers per camera from %d to %d: not a fair share", lo, hi)
	}
}

// countingDetector counts the calls that have started, in all.
type countingDetector struct {
	d       time.Duration
	started *atomic.Int64
	at      chan int64 // if set, receives started's value at each call
}

func (c *countingDetector) Name() string { return "people" }
func (c *countingDetector) Detect(ctx context.Context, img blur.Image) ([]blur.Detection, error) {
	n := c.started.Add(1)
	if c.at != nil {
		c.at <- n
	}
	time.Sleep(c.d)
	return nil, nil
}

// TestCountingNeverDelaysFaces saturates the engine with the low network
// (eight cameras' person detection, each asking again as soon as it is
// answered) while one camera asks for faces now and then. Served in turn
// with the low requests, a face request would wait behind up to eight
// person inferences; served first, it waits for none but the one already
// running when it was asked. Counted in inferences, not timed, so a slow
// or busy machine does not change the verdict. The low network must still
// be served in the face camera's idle time.
func TestCountingNeverDelaysFaces(t *testing.T) {
	var lowStarted atomic.Int64
	people := &countingDetector{d: 3 * time.Millisecond, started: &lowStarted}
	var faceStarted atomic.Int64
	seen := make(chan int64, 1)
	face := &countingDetector{d: time.Millisecond, started: &faceStarted, at: make(chan int64, 1)}
	e, _, _ := newEngine(t, face)
	if err := e.SetLow([]blur.Detector{people, people}, 1); err == nil {
		t.Fatal("SetLow took two lanes for one face lane")
	}
	if err := e.SetLow([]blur.Detector{people}, 1); err != nil {
		t.Fatal(err)
	}
	cam := e.For("cam")
	if e.LowFor("x").Name() != "people" {
		t.Fatal("low handle names another network")
	}
	var lows []blur.Detector
	for range 8 {
		lows = append(lows, e.LowFor("cam"))
	}
	stop := run(e)
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, h := range lows {
		wg.Go(func() {
			for ctx.Err() == nil {
				h.Detect(ctx, img(100+i))
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // the low queue is full
	worst := int64(0)
	for range 50 {
		before := lowStarted.Load()
		go func() { <-face.at; seen <- lowStarted.Load() }()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := cam.Detect(dctx, img(1)); err != nil {
			t.Fatal(err)
		}
		dcancel()
		worst = max(worst, <-seen-before)
		time.Sleep(5 * time.Millisecond) // idle time the low network may use
	}
	cancel()
	wg.Wait()
	served := lowStarted.Load()
	t.Logf("faces: 50 asked; at worst %d person inferences started between asking and answering; person inferences: %d", worst, served)
	if worst > 1 {
		t.Errorf("a face request waited behind %d person inferences (at most the one running)", worst)
	}
	if served < 20 {
		t.Errorf("the low network was served %d times in the face camera's idle time", served)
	}
}

// TestCountingStaysWithinItsShare floods the low network (four cameras'
// person detection, each asking again as soon as it is answered, each
// with a deadline) on an engine with no face requests: it may use only
// its share of the lane's time, and the requests that wait past their
// deadline are answered with that error.
func TestCountingStaysWithinItsShare(t *testing.T) {
	face := &slowDetector{d: time.Millisecond, calls: map[int]int{}}
	var lowStarted atomic.Int64
	people := &countingDetector{d: 10 * time.Millisecond, started: &lowStarted}
	e, _, _ := newEngine(t, face)
	if err := e.SetLow([]blur.Detector{people}, 0); err == nil {
		t.Fatal("SetLow took a share of 0")
	}
	if err := e.SetLow([]blur.Detector{people}, 0.2); err != nil {
		t.Fatal(err)
	}
	var lows []blur.Detector
	for range 4 {
		lows = append(lows, e.LowFor("cam"))
	}
	stop := run(e)
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var expired atomic.Int64
	start := time.Now()
	for i, h := range lows {
		wg.Go(func() {
			for ctx.Err() == nil {
				dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				if _, err := h.Detect(dctx, img(100+i)); err != nil && ctx.Err() == nil {
					expired.Add(1)
				}
				dcancel()
			}
		})
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	wall := time.Since(start)
	busy := time.Duration(lowStarted.Load()) * people.d
	share := busy.Seconds() / wall.Seconds()
	t.Logf("low network: %d inferences, %.2f of the lane's time (share 0.2); %d requests expired waiting", lowStarted.Load(), share, expired.Load())
	// At least its time inferring: more if the machine is slow, so the
	// bound above is loose.
	if share > 0.3 || share < 0.1 {
		t.Errorf("the low network used %.2f of the lane's time, want about 0.2", share)
	}
	if expired.Load() == 0 {
		t.Error("no low request waited past its deadline under a full budget")
	}
}
