package exporter

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/publish"
	"github.com/veilproject/veil/queue"
)

// BenchmarkPublishToMetric pushes count events through publisher (spool,
// fsync) → real Kafka → exporter (state saved) and reports throughput and
// the latency from an event's creation to its counts being exported.
func BenchmarkPublishToMetric(b *testing.B) {
	const perRun = 2000
	cams := make([]string, 20)
	for i := range cams {
		cams[i] = fmt.Sprintf("cam%02d", i)
	}
	var all []time.Duration
	var elapsed time.Duration
	for run := 0; b.Loop(); run++ {
		topic := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), run)
		kc := realKafka(b, topic)
		var mu sync.Mutex
		var lat []time.Duration
		e, err := New(Config{Kafka: kc, GroupID: topic}, Deps{Registerer: prometheus.NewRegistry(),
			OnDelay: func(d time.Duration) { mu.Lock(); lat = append(lat, d); mu.Unlock() }})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		for owned := 0; owned < 3; time.Sleep(20 * time.Millisecond) { // wait for the assignment
			e.mu.Lock()
			owned = len(e.owned)
			e.mu.Unlock()
		}
		p, err := publish.New(publish.Config{Kafka: kc, SpoolDir: b.TempDir()}, publish.Deps{Registerer: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		q := queue.New[footfall.Event](256, queue.Block, nil)
		pubDone := make(chan error, 1)
		go func() { pubDone <- p.Run(context.Background(), q, time.Minute) }()
		start := time.Now()
		for i := 0; i < perRun/len(cams); i++ {
			for _, c := range cams {
				now := time.Now()
				q.Push(context.Background(), footfall.Event{Schema: footfall.SchemaV1, Camera: c, Epoch: 1, Seq: uint64(i),
					WindowStart: now.Add(-time.Second), WindowEnd: now, Lines: []footfall.LineCount{{ID: "door", Entries: 1}}})
			}
		}
		q.Close()
		<-pubDone
		for {
			mu.Lock()
			n := len(lat)
			mu.Unlock()
			if n >= perRun {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		elapsed += time.Since(start)
		cancel()
		<-done
		all = append(all, lat...)
	}
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
