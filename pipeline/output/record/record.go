// Package record writes a camera's obscured frames to segmented MP4 files
// (H.264, each frame at its capture time: variable frame rate)
// and enforces retention by age and by total size, continuously. It takes
// *blur.Frame only. Segments are written under a hidden partial name and
// renamed when finished, so every visible file is complete and playable; a
// partial left by a crash is deleted at start (it held obscured video
// only, but is unplayable).
package record

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/pipeline/output/encode"
	"github.com/veilproject/veil/pipeline/output/record/recordconf"
	"github.com/veilproject/veil/pipeline/wallclock"
)

// Config is the recordings policy (package recordconf, which the
// configuration reads without this package's cgo).
type Config = recordconf.Config

// SegmentName matches the names of the segments a Recorder writes.
var SegmentName = recordconf.SegmentName

// Metrics are the recorder's series.
type Metrics struct {
	segments *prometheus.CounterVec
	errors   *prometheus.CounterVec
	deleted  *prometheus.CounterVec
	bytes    prometheus.Gauge
	free     prometheus.Gauge
	size     prometheus.Gauge
}

// NewMetrics registers the recording metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		segments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_recording_segments_total", Help: "Segments finished."}, []string{"camera"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_recording_errors_total",
			Help: "Recording failures (a full disk among them), by operation: open, write, finish, retention."}, []string{"camera", "op"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_recording_deleted_total", Help: "Segments deleted by retention, by reason: age, size."}, []string{"reason"}),
		bytes:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "veil_recording_bytes", Help: "Bytes of finished segments on disk."}),
		free:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "veil_recording_disk_free_bytes", Help: "Free bytes on the recordings' filesystem."}),
		size:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "veil_recording_disk_size_bytes", Help: "Size of the recordings' filesystem."}),
	}
	for _, c := range []prometheus.Collector{m.segments, m.errors, m.deleted, m.bytes, m.free, m.size} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Recorder writes one camera's encoded video into segments. It does not
// encode: the camera's one encoder (pipeline/output/live) hands it the
// packets it also hands live viewers.
type Recorder struct {
	cfg    Config
	camera string
	dir    string
	log    *slog.Logger
	m      *Metrics
	cur    *encode.Muxer
	curEnc *encode.Encoder // whose packets the current segment holds
	curEnd time.Duration   // PTS at which the current segment ends
	retry  time.Time       // after a failure, no new segment before this
}

// New prepares the camera's directory and removes partial segments left
// by a crash.
func New(cfg Config, camera string, m *Metrics, log *slog.Logger) (*Recorder, error) {
	cfg.Defaults()
	if m == nil {
		return nil, errors.New("record: no metrics")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(cfg.Dir, camera)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("recordings %s: %w", dir, err)
	}
	partials, _ := filepath.Glob(filepath.Join(dir, ".*.partial"))
	for _, p := range partials {
		os.Remove(p)
	}
	return &Recorder{cfg: cfg, camera: camera, dir: dir, log: log.With("component", "record", "camera", camera), m: m}, nil
}

// Dir is where the camera's segments are.
func (r *Recorder) Dir() string { return r.dir }

// Preset is the x264 preset recordings are encoded with.
func (r *Recorder) Preset() string { return r.cfg.Preset }

// Write adds a packet of enc, captured at captured. Segments start on a
// keyframe: the recorder asks enc for one at the segment's end and starts
// the next segment with it; a packet of another encoder (the
// picture size changed) finishes the segment at once. Segments are
// variable frame rate, so they last the wall time they cover whatever was
// dropped. A failure (a full disk) is logged and counted, the segment
// abandoned, and recording retried 10 s later: it never stops the
// pipeline.
func (r *Recorder) Write(enc *encode.Encoder, p encode.Packet, captured time.Time) {
	// A segment holds at least two pictures: after a long gap (the detector
	// warming up on the first frame, a stalled camera) the next one still
	// goes in, so no segment is a single picture that does not play.
	if r.cur != nil && (enc != r.curEnc || p.PTS >= r.curEnd && p.Key && r.cur.Packets() > 1) {
		r.finish(context.Background())
	}
	if r.cur != nil && p.PTS >= r.curEnd {
		enc.RequestKeyframe()
	}
	if r.cur == nil {
		if time.Now().Before(r.retry) {
			return
		}
		if !p.Key {
			enc.RequestKeyframe()
			return
		}
		name := fmt.Sprintf("%s-%s.mp4", r.camera, captured.UTC().Format("20060102T150405.000Z"))
		mux, err := encode.CreateMuxer(filepath.Join(r.dir, name), enc)
		if err != nil {
			r.fail("open", err)
			return
		}
		r.cur, r.curEnc, r.curEnd = mux, enc, p.PTS+r.cfg.Segment
		enc.KeyframeAt(r.curEnd)
	}
	if err := r.cur.Write(p); err != nil {
		r.fail("write", err)
		r.cur.Close(ended)
		r.cur = nil
	}
}

// ended is a context that has ended: closing with it abandons a segment.
var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (r *Recorder) finish(ctx context.Context) error {
	err := r.cur.Close(ctx)
	if err != nil {
		r.fail("finish", err)
	} else {
		r.m.segments.WithLabelValues(r.camera).Inc()
	}
	r.cur, r.curEnc = nil, nil
	return err
}

func (r *Recorder) fail(op string, err error) {
	r.m.errors.WithLabelValues(r.camera, op).Inc()
	r.log.Error("recording failed; retrying in 10s", "op", op, "err", err)
	r.retry = time.Now().Add(10 * time.Second)
}

// Close finishes the current segment cleanly (on shutdown); if ctx ends
// first, the segment is abandoned. The encoder's last packets must have
// been written first.
func (r *Recorder) Close(ctx context.Context) error {
	if r.cur == nil {
		return nil
	}
	return r.finish(ctx)
}

// Retention deletes old segments by age and total size, every interval,
// until ctx ends.
type Retention struct {
	Config  Config
	Metrics *Metrics
	Logger  *slog.Logger
	mu      sync.Mutex
	clock   wallclock.Guard
	jumped  bool // the jump is logged once
}

// Run enforces the policy now and then every interval.
func (t *Retention) Run(ctx context.Context, interval time.Duration) error {
	for {
		if err := t.Enforce(); err != nil {
			t.Metrics.errors.WithLabelValues("", "retention").Inc()
			if t.Logger != nil {
				t.Logger.Error("retention", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

type segment struct {
	path string
	mod  time.Time
	size int64
}

// Enforce applies the policy once.
func (t *Retention) Enforce() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var segs []segment
	err := filepath.WalkDir(t.Config.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !SegmentName.MatchString(d.Name()) {
			return nil // only what veil named is veil's to delete
		}
		info, err := d.Info()
		if err == nil {
			segs = append(segs, segment{p, info.ModTime(), info.Size()})
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.clock.Max = t.Config.MaxClockJump
	now, jump := t.clock.Now()
	if (jump != 0) != t.jumped && t.Logger != nil {
		if jump != 0 {
			t.Logger.Error("the wall clock jumped: recordings are aged by the monotonic clock until it is back or veil restarts", "jump", jump.Round(time.Second), "max_clock_jump", t.Config.MaxClockJump)
		} else {
			t.Logger.Info("the wall clock is back: recordings are aged by it again")
		}
	}
	t.jumped = jump != 0
	sort.Slice(segs, func(i, j int) bool { return segs[i].mod.Before(segs[j].mod) })
	var total int64
	for _, s := range segs {
		total += s.size
	}
	var errs []error
	for _, s := range segs {
		reason := ""
		switch {
		case now.Sub(s.mod) > t.Config.Keep:
			reason = "age"
		case total > t.Config.MaxBytes:
			reason = "size"
		default:
			continue
		}
		if err := os.Remove(s.path); err != nil {
			errs = append(errs, err)
			continue
		}
		total -= s.size
		t.Metrics.deleted.WithLabelValues(reason).Inc()
	}
	t.Metrics.bytes.Set(float64(total))
	var st syscall.Statfs_t
	if err := syscall.Statfs(t.Config.Dir, &st); err == nil {
		t.Metrics.free.Set(float64(st.Bavail) * float64(st.Bsize))
		t.Metrics.size.Set(float64(st.Blocks) * float64(st.Bsize))
	}
	return errors.Join(errs...)
}
