package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// BenchmarkCapacity is the capacity benchmark (make bench): N cameras at
// 1280x720 15 fps served by a real RTSP server (GStreamer, streaming an
// H.264 clip of vtest.avi without re-encoding, so the server costs almost
// nothing), `veil run` with counting and recording on, for N = 1, 2, 3, 4, 8.
// Per N, over a 30 s window after 10 s of warm-up: frames decoded, obscured
// with a detector answer, obscured whole (fail-closed), dropped; CPU, in
// all and per stage (time spent decoding, in the engine, obscuring,
// counting, encoding, per second of the window); latency from decode to
// the recorder; RSS. It prints the largest N at
// which at least 99% of decoded frames were obscured with a detector
// answer and reached the recorder's encoder (a frame its queue dropped is
// "not recorded"). Run with -benchtime 1x. VEIL_CAPACITY_N lists the Ns;
// VEIL_CAPACITY_CONFIG adds top-level YAML to every run (e.g.
// "detector: {lanes: 1}") to compare settings side by side.
// VEIL_CAPACITY_COUNTING is the counting method of every camera (a line
// and a zone each): detector (the default), motion, or off.
func BenchmarkCapacity(b *testing.B) {
	clip := capacityClip(b)
	port := rtspCamera(b, "--file", clip)
	ns := []int{1, 2, 3, 4, 8}
	if s := os.Getenv("VEIL_CAPACITY_N"); s != "" {
		ns = nil
		for _, f := range strings.Split(s, ",") {
			n, _ := strconv.Atoi(f)
			ns = append(ns, n)
		}
	}
	for b.Loop() {
		var rows []capRow
		for _, n := range ns {
			rows = append(rows, runCapacity(b, port, n))
		}
		best := 0
		var out strings.Builder
		fmt.Fprintf(&out, "\n| cameras | decoded | obscured, detector answer | obscured whole | dropped | not recorded | answered and recorded %% | whole-frame searches | CPU cores | engine busy | person detection | detections skipped | decoding | obscuring | counting | encoding | latency p50 / p99 ms | RSS MiB | of which Go heap MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rows {
			share := (r.answered - r.unrecorded) / math.Max(1, r.decoded)
			if share >= 0.99 {
				best = r.n
			}
			fmt.Fprintf(&out, "| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f%% | %.2f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f / %.0f | %.0f | %.0f |\n",
				r.n, r.decoded, r.answered, r.failClosed, r.dropped, r.unrecorded, 100*share, 100*r.full/math.Max(1, r.full+r.regions), r.cpu, r.engine, r.people, r.skipped, r.decode, r.obscure, r.count, r.encode, 1000*r.p50, 1000*r.p99, r.rss/(1<<20), r.heap/(1<<20))
			b.ReportMetric(100*share, fmt.Sprintf("answered%%/%dcam", r.n))
		}
		fmt.Fprintf(&out, "\nlargest N with >= 99%% of decoded frames obscured with a detector answer and recorded: **%d** (1280x720, 15 fps each)\n", best)
		fmt.Print(out.String())
		b.ReportMetric(float64(best), "cameras")
	}
}

type capRow struct {
	n                                      int
	decoded, answered, failClosed, dropped float64
	unrecorded                             float64 // obscured, then dropped before the recorder's encoder
	cpu, engine, obscure, p50, p99, rss    float64
	decode, count, encode                  float64 // stage time per second: cores
	people                                 float64 // person detection in the engine, per second: cores
	skipped                                float64 // person detections skipped
	heap                                   float64 // Go heap in use
	full, regions                          float64
}

// capacityClip is vtest.avi at 1280x720, 15 fps, H.264 with a keyframe a
// second, made once and cached. The clip is 10 fps: it is played 1.5
// times as fast, so that every frame is new, as every frame of a real 15
// fps camera is (people then move a little faster than they would).
// Duplicating a third of its frames instead, as this did until the
// fourth sitting, made those frames nearly free once motion was measured
// against what was last searched: nothing changes on a repeated frame.
func capacityClip(b *testing.B) string {
	return vtestClip(b, "vtest-720p15-new.mp4", nil, "-vf", "setpts=PTS/1.5,scale=1280:720", "-r", "15", "-g", "15")
}

// vtestClip is vtest.avi made into name (H.264, no B-frames, no audio)
// with ffmpeg's input and output options, once, and cached under
// $VEIL_CACHE/bench.
func vtestClip(tb testing.TB, name string, input []string, output ...string) string {
	dir := os.Getenv("VEIL_CACHE")
	if dir == "" {
		c, _ := os.UserCacheDir()
		dir = filepath.Join(c, "veil")
	}
	path := filepath.Join(dir, "bench", name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	os.MkdirAll(filepath.Dir(path), 0o755)
	tmp := path + ".partial.mp4"
	args := append(append(append([]string{"-v", "error", "-y"}, input...), "-i", vtest), output...)
	args = append(args, "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0", "-an", tmp)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		tb.Fatalf("making %s: %v %s", name, err, out)
	}
	os.Rename(tmp, path)
	return path
}

func runCapacity(b *testing.B, port, n int) capRow {
	dir := b.TempDir()
	var cfg strings.Builder
	cfg.WriteString("cameras:\n")
	method := cmpOr(os.Getenv("VEIL_CAPACITY_COUNTING"), "detector")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&cfg, "  - id: cam%d\n    url: rtsp://127.0.0.1:%d/cam\n", i, port)
		if method != "off" {
			fmt.Fprintf(&cfg, "    method: %s\n    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]\n    zones: [{id: road_area, polygon: [[0, 0.25], [1, 0.25], [1, 0.75], [0, 0.75]]}]\n", method)
		}
	}
	fmt.Fprintf(&cfg, "metrics: {listen: \"127.0.0.1:0\"}\nrecordings: {dir: %s, segment: 10s, keep: 1h}\n", filepath.Join(dir, "rec"))
	cfg.WriteString(os.Getenv("VEIL_CAPACITY_CONFIG")) // more top-level YAML, to compare settings
	p := startVeil(b, "run", "-config", writeConfig(b, dir, cfg.String()))
	p.waitFor(b, "metrics address", 60*time.Second, func(l []string) bool { return metricsURL(l) != "" })
	lines, _ := p.snapshot()
	url := metricsURL(lines)
	up := fmt.Sprintf("%d", n)
	p.waitFor(b, "every camera up", 60*time.Second, func([]string) bool {
		return sum(scrapeFamilies(b, url), "veil_camera_up", nil) == mustFloat(up)
	})
	time.Sleep(10 * time.Second)
	a := scrapeFamilies(b, url)
	const window = 30 * time.Second
	time.Sleep(window)
	z := scrapeFamilies(b, url)
	p.stop(b, syscall.SIGTERM, 60*time.Second)
	d := func(name string, labels map[string]string) float64 {
		return sum(z, name, labels) - sum(a, name, labels)
	}
	sec := window.Seconds()
	r := capRow{n: n,
		decoded:    d("veil_ingest_frames_decoded_total", nil),
		answered:   d("veil_blur_frames_total", map[string]string{"result": "obscured"}),
		failClosed: d("veil_blur_frames_total", map[string]string{"result": "fail_closed"}) + d("veil_blur_frames_total", map[string]string{"result": "dropped"}),
		dropped:    d("veil_pipeline_frames_dropped_total", map[string]string{"stage": "blur"}),
		unrecorded: d("veil_pipeline_frames_dropped_total", map[string]string{"stage": "video"}),
		cpu:        d("process_cpu_seconds_total", nil) / sec,
		engine:     d("veil_engine_inference_duration_seconds_sum", nil) / sec,
		obscure:    d("veil_blur_obscure_duration_seconds_sum", nil) / sec,
		decode:     d("veil_ingest_decode_duration_seconds_sum", nil) / sec,
		count:      d("veil_people_process_duration_seconds_sum", nil) / sec,
		people:     d("veil_engine_people_inference_duration_seconds_sum", nil) / sec,
		skipped:    d("veil_people_detections_skipped_total", nil),
		encode:     d("veil_live_encode_duration_seconds_sum", nil) / sec,
		rss:        sum(z, "process_resident_memory_bytes", nil),
		heap:       sum(z, "go_memstats_heap_inuse_bytes", nil),
		full:       d("veil_blur_searches_total", map[string]string{"kind": "full"}),
		regions:    d("veil_blur_searches_total", map[string]string{"kind": "regions"}),
	}
	r.p50, r.p99 = quantiles(a, z, "veil_pipeline_output_latency_seconds", map[string]string{"output": "video"})
	return r
}

func mustFloat(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }

func scrapeFamilies(b *testing.B, url string) map[string]*dto.MetricFamily {
	body := scrape(url)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		b.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

func matches(m *dto.Metric, labels map[string]string) bool {
	for k, v := range labels {
		if label(m, k) != v {
			return false
		}
	}
	return true
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// sum adds the samples of a counter, gauge or untyped family (a
// histogram's _sum is looked up in the histogram family).
func sum(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	hist := false
	if _, ok := fams[name]; !ok && strings.HasSuffix(name, "_sum") {
		name, hist = strings.TrimSuffix(name, "_sum"), true
	}
	t := 0.0
	for _, m := range fams[name].GetMetric() {
		if !matches(m, labels) {
			continue
		}
		switch {
		case hist:
			t += m.GetHistogram().GetSampleSum()
		default:
			t += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return t
}

// quantiles are the p50 and p99 of a histogram family's increase between
// two scrapes, summed over the matching series, interpolated inside
// buckets as Prometheus' histogram_quantile does.
func quantiles(a, z map[string]*dto.MetricFamily, name string, labels map[string]string) (p50, p99 float64) {
	counts := map[float64]float64{}
	for i, fams := range []map[string]*dto.MetricFamily{a, z} {
		sign := -1.0
		if i == 1 {
			sign = 1
		}
		for _, m := range fams[name].GetMetric() {
			if !matches(m, labels) {
				continue
			}
			for _, bk := range m.GetHistogram().GetBucket() {
				counts[bk.GetUpperBound()] += sign * float64(bk.GetCumulativeCount())
			}
		}
	}
	var bounds []float64
	for ub := range counts {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0, 0
	}
	total := counts[bounds[len(bounds)-1]]
	q := func(phi float64) float64 {
		rank, prevUB, prevC := phi*total, 0.0, 0.0
		for _, ub := range bounds {
			c := counts[ub]
			if c >= rank {
				if math.IsInf(ub, 1) {
					return prevUB
				}
				return prevUB + (ub-prevUB)*(rank-prevC)/math.Max(1e-9, c-prevC)
			}
			prevUB, prevC = ub, c
		}
		return prevUB
	}
	return q(0.5), q(0.99)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
