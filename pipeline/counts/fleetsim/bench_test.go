package fleetsim

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
)

// BenchmarkFleet publishes a fleet through the three-broker cluster to
// three exporters in one group (child processes, so each one's CPU and
// memory are its own) and reports events a second, the delay from a
// window's end to its counts being exported (p50, p99, exact, over every
// event), and each exporter's CPU and peak memory. Sizes from the
// environment: VEIL_FLEET_SITES (200), VEIL_FLEET_CAMERAS (8),
// VEIL_FLEET_WINDOW (10s), VEIL_FLEET_FOR (60s). `make fleet-bench` runs
// it with 10 s and with 1 s windows; run with -benchtime=1x.
func BenchmarkFleet(b *testing.B) {
	needCluster(b)
	sites, cams := envInt("VEIL_FLEET_SITES", 200), envInt("VEIL_FLEET_CAMERAS", 8)
	window, run := envDur("VEIL_FLEET_WINDOW", 10*time.Second), envDur("VEIL_FLEET_FOR", time.Minute)
	for i := 0; b.Loop(); i++ {
		kc := kafkaconf.Config{Brokers: cluster.Brokers, Topic: fmt.Sprintf("fleet-bench-%d-%d", time.Now().UnixNano(), i)}
		if err := kc.EnsureTopic(context.Background(), kc.Topic, 12, nil); err != nil {
			b.Fatal(err)
		}
		keysDir := writeKeys(b, sites)
		var exps []*member
		for range 3 {
			exps = append(exps, start(b, "exporter", "VEIL_FLEET_TOPIC="+kc.Topic, "VEIL_FLEET_GROUP="+kc.Topic, "VEIL_FLEET_KEYS="+keysDir))
		}
		waitGroup(b, 12, exps...) // the group forms before the load
		cpu0 := make([]float64, len(exps))
		for j, e := range exps {
			cpu0[j] = cpuSeconds(e.Cmd.Process.Pid)
		}
		var spooled, want, spoolLat atomic.Int64
		ctx, cancel := context.WithTimeout(context.Background(), run)
		t0 := time.Now()
		err := Run(ctx, Config{Kafka: kc, Sites: sites, Cameras: cams, Window: window, SpoolDir: b.TempDir(), Key: siteKey},
			Deps{OnSpooled: func(ev footfall.Event) {
				spoolLat.Add(int64(time.Since(ev.WindowEnd)))
				spooled.Add(1)
				want.Add(int64(ev.Lines[0].Entries + ev.Lines[0].Exits))
			}}, 30*time.Second)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		// Wait for the exporters to show every event.
		n := spooled.Load()
		deadline := time.Now().Add(2 * time.Minute)
		for crossings(exported(exps...)) < want.Load() && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
		}
		wall := time.Since(t0)
		var delays []time.Duration
		var report []string
		for j, e := range exps {
			cpu := (cpuSeconds(e.Cmd.Process.Pid) - cpu0[j]) / wall.Seconds()
			rss := peakRSS(e.Cmd.Process.Pid)
			e.Kill(syscall.SIGTERM)
			d := readDelays(b, e.delays)
			delays = append(delays, d...)
			report = append(report, fmt.Sprintf("exporter %d: %d events, CPU %.3f cores, peak RSS %.0f MiB", j+1, len(d), cpu, rss/(1<<20)))
			b.ReportMetric(cpu, fmt.Sprintf("cores/exporter%d", j+1))
			b.ReportMetric(rss/(1<<20), fmt.Sprintf("MiB/exporter%d", j+1))
		}
		slices.Sort(delays)
		if len(delays) == 0 {
			b.Fatal("no delays")
		}
		q := func(p float64) time.Duration { return delays[min(len(delays)-1, int(p*float64(len(delays))))] }
		b.ReportMetric(float64(len(delays))/run.Seconds(), "events/s")
		b.ReportMetric(float64(q(0.5).Milliseconds()), "p50_ms")
		b.ReportMetric(float64(q(0.99).Milliseconds()), "p99_ms")
		b.Logf("%d sites x %d cameras, %v windows, %v: %d events spooled, %d applied (%.0f a second); window end to /metrics p50 %v, p99 %v, max %v\n  %s",
			sites, cams, window, run, n, len(delays), float64(len(delays))/run.Seconds(), q(0.5), q(0.99), delays[len(delays)-1], strings.Join(report, "\n  "))
		b.Logf("mean window end to spooled: %v", time.Duration(spoolLat.Load()/max(n, 1)))
		if int64(len(delays)) != n {
			b.Errorf("%d events spooled, %d applied", n, len(delays))
		}
	}
}

// crossings is the entries and exits the exporters' totals hold.
func crossings(got map[string][2]int64) int64 {
	var n int64
	for _, t := range got {
		n += t[0] + t[1]
	}
	return n
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return def
}

func envDur(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(k)); err == nil && d > 0 {
		return d
	}
	return def
}

// cpuSeconds is a process's user and system time.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// peakRSS is a process's peak resident memory in bytes.
func peakRSS(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb * 1024
		}
	}
	return 0
}

func readDelays(b testing.TB, path string) []time.Duration {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	for _, l := range strings.Fields(string(data)) {
		n, _ := strconv.ParseInt(l, 10, 64)
		out = append(out, time.Duration(n))
	}
	return out
}
