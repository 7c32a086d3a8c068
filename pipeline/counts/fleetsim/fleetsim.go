// Package fleetsim publishes the count events of a simulated fleet, as
// many sites and cameras as asked, through the real publisher and spool
// (one publisher and spool per site, as one box per office has): the
// fleet benchmark and fault tests drive Kafka and the exporters with it.
// Each camera ends a window every Window of wall-clock time, so the
// exporter's delay from a window's end to its counts is measured as a
// real fleet would see it.
package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/publish"
	"github.com/veilproject/veil/pipeline/counts/signing"
	"github.com/veilproject/veil/queue"
)

// Config is a simulated fleet.
type Config struct {
	Kafka kafkaconf.Config
	// Sites are named SiteName(FirstSite) .. SiteName(FirstSite+Sites-1).
	Sites, FirstSite int
	// Cameras per site, named CameraName(0) ..
	Cameras int
	// Window is each camera's count window.
	Window time.Duration
	// SpoolDir holds one spool per site.
	SpoolDir string
	// Key gives a site's signing key; nil (or a nil key): unsigned.
	Key func(site string) signing.Key
	// Epoch is the run's start (Unix ms) in every event; 0: now. A site
	// restarted after a crash runs with a later one, as veil does.
	Epoch int64
}

// SiteName is the i-th site's id.
func SiteName(i int) string { return fmt.Sprintf("site-%03d", i) }

// CameraName is the c-th camera's id at every site.
func CameraName(c int) string { return fmt.Sprintf("cam-%d", c) }

// Counts is what the simulated counter of camera c counted in window seq:
// known to the tests, so totals can be checked exactly.
func Counts(c int, seq uint64) (entries, exits int) {
	return int((seq + uint64(c)) % 4), int((seq*7 + uint64(c)) % 3)
}

// Deps are the simulator's wiring.
type Deps struct {
	Logger *slog.Logger
	// OnSpooled sees each event once it is durably in its site's spool.
	OnSpooled func(footfall.Event)
}

// Run publishes until ctx ends, then gives each site's publisher drain to
// hand its backlog to Kafka (what is left stays in the spool).
func Run(ctx context.Context, cfg Config, deps Deps, drain time.Duration) error {
	if cfg.Sites < 1 || cfg.Cameras < 1 || cfg.Window <= 0 || cfg.SpoolDir == "" {
		return errors.New("fleetsim: sites, cameras, window and spool dir are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	epoch := cfg.Epoch
	if epoch == 0 {
		epoch = time.Now().UnixMilli()
	}
	var wg sync.WaitGroup
	errs := make([]error, cfg.Sites)
	for i := range cfg.Sites {
		site := SiteName(cfg.FirstSite + i)
		var key signing.Key
		if cfg.Key != nil {
			key = cfg.Key(site)
		}
		p, err := publish.New(publish.Config{Kafka: cfg.Kafka, SpoolDir: filepath.Join(cfg.SpoolDir, site), SignKey: key},
			publish.Deps{Logger: deps.Logger.With("site", site), Registerer: prometheus.NewRegistry(), OnSpooled: deps.OnSpooled})
		if err != nil {
			return err
		}
		// Events are never dropped: a full queue holds the site's counter
		// back, as in veil.
		q := queue.New[footfall.Event](4*cfg.Cameras, queue.Block, nil)
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs[i] = p.Run(context.WithoutCancel(ctx), q, drain)
		}()
		go func() {
			defer wg.Done()
			defer q.Close()
			runSite(ctx, site, cfg, epoch, q)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runSite ends each camera's windows in turn, the cameras spread over the
// window (a camera's windows start when its stream does).
func runSite(ctx context.Context, site string, cfg Config, epoch int64, q *queue.Queue[footfall.Event]) {
	h := fnv.New32a()
	h.Write([]byte(site))
	offset := time.Duration(h.Sum32()) % cfg.Window
	start := time.Now().Truncate(cfg.Window).Add(offset)
	step := cfg.Window / time.Duration(cfg.Cameras)
	next := make([]time.Time, cfg.Cameras)
	seq := make([]uint64, cfg.Cameras)
	for c := range next {
		next[c] = start.Add(time.Duration(c) * step)
		for !next[c].After(time.Now()) {
			next[c] = next[c].Add(cfg.Window)
		}
	}
	for {
		c := 0
		for i := range next {
			if next[i].Before(next[c]) {
				c = i
			}
		}
		t := time.NewTimer(time.Until(next[c]))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		in, out := Counts(c, seq[c])
		ev := footfall.Event{Schema: footfall.SchemaV1, Site: site, Camera: CameraName(c), Epoch: epoch, Seq: seq[c],
			WindowStart: next[c].Add(-cfg.Window), WindowEnd: next[c],
			Lines: []footfall.LineCount{{ID: "door", Entries: in, Exits: out}},
			Zones: []footfall.ZoneCount{{ID: "hall", Occupancy: int(seq[c] % 5), Peak: 5, Capacity: 40}}}
		if q.Push(ctx, ev) != nil {
			return
		}
		seq[c]++
		next[c] = next[c].Add(cfg.Window)
	}
}
