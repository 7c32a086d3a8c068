package exporter

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/veilproject/veil/pipeline/counts/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/publish"
	"github.com/veilproject/veil/pipeline/queue"
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
	p, err := publish.New(publish.Config{Kafka: kc, SpoolDir: spoolDir}, publish.Deps{Logger: testLogger(t), Registerer: prometheus.NewRegistry()})
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
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kc := kafkaconf.Config{Brokers: c.ListenAddrs(), Topic: "veil.footfall.v1"}
	if err := kc.EnsureTopic(context.Background(), kc.Topic, 3, nil); err != nil {
		t.Fatal(err)
	}
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
