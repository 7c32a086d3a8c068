package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/publish"
	"github.com/veilproject/veil/queue"
)

// events makes n events for each camera, with a known total: every event
// has 2 entries and 1 exit on line "door".
func events(cameras []string, n int, epoch int64) []footfall.Event {
	var out []footfall.Event
	t0 := time.Now().Add(-time.Minute)
	for i := 0; i < n; i++ {
		for _, c := range cameras {
			out = append(out, footfall.Event{Schema: footfall.SchemaV1, Camera: c, Epoch: epoch, Seq: uint64(i),
				WindowStart: t0.Add(time.Duration(i) * time.Second), WindowEnd: t0.Add(time.Duration(i+1) * time.Second),
				Lines: []footfall.LineCount{{ID: "door", Entries: 2, Exits: 1}},
				Zones: []footfall.ZoneCount{{ID: "hall", Occupancy: i % 7, Peak: 7, Capacity: 40}}})
		}
	}
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("VEIL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// publishAll runs a publisher over evs until they are all acknowledged.
func publishAll(t testing.TB, kc kafkaconf.Config, spoolDir string, evs []footfall.Event) {
	t.Helper()
	publishWith(t, publish.Config{Kafka: kc, SpoolDir: spoolDir}, evs)
}

// publishWith runs a publisher of cfg over evs until they are all
// acknowledged.
func publishWith(t testing.TB, cfg publish.Config, evs []footfall.Event) {
	t.Helper()
	p, err := publish.New(cfg, publish.Deps{Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New[footfall.Event](len(evs)+1, queue.Block, nil)
	for _, e := range evs {
		q.Push(context.Background(), e)
	}
	q.Close()
	if err := p.Run(context.Background(), q, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// fakeKafka is an in-process Kafka-protocol broker (kfake), closed with
// the test, and the event topic on it with partitions partitions.
func fakeKafka(t testing.TB, partitions int) kafkaconf.Config {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kc := kafkaconf.Config{Brokers: c.ListenAddrs(), Topic: "veil.footfall.v1"}
	if err := kc.EnsureTopic(context.Background(), kc.Topic, partitions, nil); err != nil {
		t.Fatal(err)
	}
	return kc
}

// waitTotals waits until the exporters together report want entries per
// camera on line door.
func waitTotals(t testing.TB, want int64, cameras []string, exps ...*Exporter) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]int64{}
		for _, e := range exps {
			for cam, lines := range e.Totals() {
				got[cam] += lines["door"][0]
			}
		}
		ok := true
		for _, c := range cameras {
			if got[c] != want {
				ok = false
			}
		}
		if ok {
			// Hold for a moment: nothing may be applied twice later.
			time.Sleep(500 * time.Millisecond)
			again := map[string]int64{}
			for _, e := range exps {
				for cam, lines := range e.Totals() {
					again[cam] += lines["door"][0]
				}
			}
			for _, c := range cameras {
				if again[c] != want {
					t.Fatalf("camera %s: %d entries after settling, want %d", c, again[c], want)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries per camera %v, want %d each", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startExporter(t testing.TB, kc kafkaconf.Config, group string) (*Exporter, func()) {
	e, err := New(Config{Kafka: kc, GroupID: group}, Deps{Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	return e, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestPublishExportInProcess runs publisher and exporter against kfake, an
// in-process Kafka-protocol broker: the fast check. The fault tests run
// against a real Apache Kafka broker (kafka_test.go).
func TestPublishExportInProcess(t *testing.T) {
	kc := fakeKafka(t, 3)
	cams := []string{"lobby", "desk", "door-2"}
	publishAll(t, kc, t.TempDir(), events(cams, 50, 1))
	e, stop := startExporter(t, kc, "g1")
	waitTotals(t, 100, cams, e)
	stop()
	// A restarted exporter resumes from saved state: same totals, and
	// a redelivered batch does not count twice.
	publishAll(t, kc, t.TempDir(), events(cams, 50, 1)) // the same events again
	e2, stop2 := startExporter(t, kc, "g1")
	defer stop2()
	waitTotals(t, 100, cams, e2)
	if n := fmt.Sprint(e2.Totals()["lobby"]["door"]); n != "[100 50]" {
		t.Errorf("lobby door %s", n)
	}
}

// writeTo writes evs to one partition of the topic, as a hostile or
// mistaken producer can.
func writeTo(t *testing.T, kc kafkaconf.Config, partition int, evs ...footfall.Event) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(kc.Brokers...), Topic: kc.Topic, BatchTimeout: time.Millisecond, Transport: tr,
		Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return partition })}
	defer w.Close()
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte(ev.Camera), Value: b}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHostileTopicWrites: on an in-process broker, events for one camera
// on two partitions are exported as one series (they made /metrics answer
// 500), an event with an epoch far in the future does not freeze the
// camera, and an impossible count is skipped and counted.
func TestHostileTopicWrites(t *testing.T) {
	kc := fakeKafka(t, 3)
	reg := prometheus.NewRegistry()
	e, err := New(Config{Kafka: kc, GroupID: "g"}, Deps{Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	evs := events([]string{"lobby"}, 4, 1) // 2 entries, 1 exit each
	writeTo(t, kc, 0, evs[0], evs[1])
	writeTo(t, kc, 1, evs[2]) // the same camera on another partition
	future := evs[3]
	future.Epoch = time.Now().Add(30 * 24 * time.Hour).UnixMilli()
	huge := evs[3]
	huge.Seq = 99
	huge.Lines = []footfall.LineCount{{ID: "door", Entries: 1 << 30}}
	writeTo(t, kc, 0, future, huge)
	later := events([]string{"lobby"}, 6, 2)[4:] // a real restart's events
	writeTo(t, kc, 0, later...)

	deadline := time.Now().Add(30 * time.Second)
	for e.Totals()["lobby"]["door"] != [2]int64{10, 5} && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := e.Totals()["lobby"]["door"]; got != [2]int64{10, 5} {
		t.Errorf("lobby door %v, want [10 5]: 3 events on two partitions and 2 after a forged future epoch", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("/metrics would answer 500: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "veil_footfall_entries_total" && len(mf.GetMetric()) != 1 {
			t.Errorf("%d entries series for one camera and line", len(mf.GetMetric()))
		}
	}
	if v := testutil.ToFloat64(e.events.WithLabelValues("implausible")); v != 2 {
		t.Errorf("implausible events counted: %v, want 2", v)
	}
}

func TestImplausible(t *testing.T) {
	now := time.Now()
	ok := events([]string{"c"}, 1, now.UnixMilli())[0]
	for _, tc := range []struct {
		name string
		mut  func(*footfall.Event)
		bad  bool
	}{
		{"real", func(*footfall.Event) {}, false},
		{"epoch a month ahead", func(e *footfall.Event) { e.Epoch = now.Add(30 * 24 * time.Hour).UnixMilli() }, true},
		{"epoch an hour ahead (clock skew)", func(e *footfall.Event) { e.Epoch = now.Add(time.Hour).UnixMilli() }, false},
		{"day-long window", func(e *footfall.Event) { e.WindowEnd = e.WindowStart.Add(24 * time.Hour) }, true},
		{"100 entries in 1 s", func(e *footfall.Event) { e.Lines[0].Entries = 100 }, false},
		{"101 entries in 1 s", func(e *footfall.Event) { e.Lines[0].Entries = 101 }, true},
		{"a million in a zone", func(e *footfall.Event) { e.Zones[0].Occupancy = 1e6 }, true},
	} {
		ev := ok
		ev.Lines = append([]footfall.LineCount(nil), ok.Lines...)
		ev.Zones = append([]footfall.ZoneCount(nil), ok.Zones...)
		tc.mut(&ev)
		if got := implausible(ev, now); (got != "") != tc.bad {
			t.Errorf("%s: %q", tc.name, got)
		}
	}
}

// TestForgedEventsCannotFreezeACamera: a forged event from a new epoch
// ("now", as the security read reproduced it) or far ahead in a live
// run's seq does not make that run's real events duplicates; real
// redeliveries still are; a camera follows a few runs at once.
func TestForgedEventsCannotFreezeACamera(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	real := func(seq uint64) footfall.Event {
		return footfall.Event{Schema: footfall.SchemaV1, Camera: "lobby", Epoch: start.UnixMilli(), Seq: seq,
			WindowStart: start.Add(time.Duration(seq) * 10 * time.Second), WindowEnd: start.Add(time.Duration(seq+1) * 10 * time.Second)}
	}
	cs := &camState{}
	apply := func(ev footfall.Event) string {
		if len(cs.Runs) == 0 {
			if why := firstOfRun(ev); why != "" {
				return "implausible"
			}
		} else if dup, why := cs.judge(ev); dup {
			return "duplicate"
		} else if why != "" {
			return "implausible"
		}
		cs.advance(ev, time.Now())
		return "applied"
	}
	forgedNow := footfall.Event{Schema: footfall.SchemaV1, Camera: "lobby", Epoch: time.Now().UnixMilli(), Seq: 0,
		WindowStart: time.Now(), WindowEnd: time.Now().Add(10 * time.Second)}
	aheadInRun := real(5000)
	aheadInRun.WindowStart, aheadInRun.WindowEnd = real(3).WindowStart, real(3).WindowEnd
	firstAhead := forgedNow
	firstAhead.Epoch, firstAhead.Seq = time.Now().Add(-time.Minute).UnixMilli(), 1000
	for i, tc := range []struct {
		name string
		ev   footfall.Event
		want string
	}{
		{"real 0", real(0), "applied"},
		{"real 1", real(1), "applied"},
		{"forged: a new epoch, now", forgedNow, "applied"}, // indistinguishable from a restart without signing
		{"real 2 after it", real(2), "applied"},
		{"forged: a seq far ahead in the live run", aheadInRun, "implausible"},
		{"real 3", real(3), "applied"},
		{"a redelivery of real 1", real(1), "duplicate"},
		{"forged: a new epoch whose seq is ahead of its windows", firstAhead, "implausible"},
		{"real 4", real(4), "applied"},
	} {
		if got := apply(tc.ev); got != tc.want {
			t.Errorf("%d %s: %s, want %s", i, tc.name, got, tc.want)
		}
	}
	// A forger sending many epochs pushes out its own runs, not the live
	// one, which is applied between them.
	for k := range 3 * maxRuns {
		ev := forgedNow
		ev.Epoch += int64(k + 1)
		apply(ev)
		if k%maxRuns == maxRuns-2 {
			if got := apply(real(5 + uint64(k/maxRuns))); got != "applied" {
				t.Errorf("the live run among forged epochs: %s", got)
			}
		}
	}
	if len(cs.Runs) != maxRuns {
		t.Errorf("%d runs followed, want %d", len(cs.Runs), maxRuns)
	}
}
