// Package placement spreads a site's cameras over the site's boxes, and
// moves them when a box dies or returns, on Kafka's consumer-group
// membership: each box of a site joins one group, each camera is one
// partition of the site's placement topic, and the group coordinator is
// the membership and the failure detector (a box that stops heartbeating
// is out after the session timeout). The group's leader places the
// cameras by their cost and the boxes' capacity (balancer). Nothing is
// read from the topic: its partitions only name the cameras.
package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
)

// Camera is one of the site's cameras and what serving it costs, in the
// unit of the boxes' capacities (cores). 0: not known before a box has
// served it and measured it (Deps.Measured); until then it is taken to
// cost as much as the site's other cameras.
type Camera struct {
	ID   string
	Cost float64
}

// Config is one box's view of its site.
type Config struct {
	Kafka kafkaconf.Config
	// Site names the group ("veil-placement-SITE") and the topic
	// ("veil.placement.SITE").
	Site string
	// Box names this box among the site's.
	Box string
	// Capacity is how much camera cost this box can serve; 1 by default.
	Capacity float64
	// Console is this box's console address, shown by the other boxes'
	// consoles beside the cameras this box serves. Optional.
	Console string
	// Cameras are the site's, the same list on every box (the order does
	// not matter).
	Cameras []Camera
	// SessionTimeout is how long a box may be silent before the others take
	// its cameras; 6 s by default.
	SessionTimeout time.Duration
	// Handover is how long a box waits before starting a camera it is
	// newly given, so that a box giving it up has stopped it (and flushed
	// its last count window) first: a camera is never counted by two boxes
	// at once. 3 s by default.
	Handover time.Duration
}

// Deps are a Placer's wiring.
type Deps struct {
	Logger *slog.Logger
	// Serve is called with the cameras this box must serve, each time that
	// changes: cameras given up at once, new ones after Handover.
	Serve func(cameras []string)
	// Measured, if set, is what each camera this box serves has cost it
	// lately (camera id → the unit of Capacity). It is announced whenever
	// the group rebalances, so the leader places by measured costs.
	Measured func() map[string]float64
	// Registerer takes the placement's metrics; nil: not exported.
	Registerer prometheus.Registerer
}

// Placer is one box's member of its site's placement group.
type Placer struct {
	cfg   Config
	log   *slog.Logger
	serve func([]string)
	ids   []string // partition i is camera ids[i]
	bal   *balancer
	topic string

	mu      sync.Mutex
	serving []string
	serveMu sync.Mutex // Serve calls one at a time, in order

	cameras     prometheus.Gauge
	generations prometheus.Counter
}

// New checks cfg.
func New(cfg Config, deps Deps) (*Placer, error) {
	if err := footfall.ValidID(cfg.Site); err != nil {
		return nil, fmt.Errorf("placement: site: %w", err)
	}
	if err := footfall.ValidID(cfg.Box); err != nil {
		return nil, fmt.Errorf("placement: box: %w", err)
	}
	if len(cfg.Cameras) == 0 {
		return nil, errors.New("placement: no cameras")
	}
	if deps.Serve == nil {
		return nil, errors.New("placement: no Serve")
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 6 * time.Second
	}
	if cfg.Handover <= 0 {
		cfg.Handover = 3 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	cams := slices.Clone(cfg.Cameras)
	sort.Slice(cams, func(i, j int) bool { return cams[i].ID < cams[j].ID })
	cost := make([]float64, len(cams))
	p := &Placer{cfg: cfg, log: deps.Logger.With("component", "placement", "site", cfg.Site, "box", cfg.Box), serve: deps.Serve,
		topic: "veil.placement." + cfg.Site}
	for i, c := range cams {
		if i > 0 && c.ID == cams[i-1].ID {
			return nil, fmt.Errorf("placement: camera %s twice", c.ID)
		}
		p.ids = append(p.ids, c.ID)
		cost[i] = max(c.Cost, 0)
	}
	p.cameras = prometheus.NewGauge(prometheus.GaugeOpts{Name: "veil_placement_cameras",
		Help: "The site's cameras this box serves now (placement)."})
	p.generations = prometheus.NewCounter(prometheus.CounterOpts{Name: "veil_placement_generations_total",
		Help: "Placements this box has received from its site's group: one each time a box joined, left or died."})
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{p.cameras, p.generations} {
			if err := deps.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("placement metrics: %w", err)
			}
		}
	}
	p.bal = &balancer{configured: func(i int) float64 { return cost[i] }, self: member{Box: cfg.Box, Capacity: cfg.Capacity, Console: cfg.Console}}
	if deps.Measured != nil {
		p.bal.measure = func() map[int]float64 {
			out := map[int]float64{}
			for id, c := range deps.Measured() {
				if i, ok := slices.BinarySearch(p.ids, id); ok {
					out[i] = c
				}
			}
			return out
		}
	}
	return p, nil
}

// Serving is the cameras this box serves now.
func (p *Placer) Serving() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.serving)
}

// Run takes part in the group until ctx ends, then serves nothing. While
// no broker answers it retries (logged): a box serves nothing before it
// has joined, and keeps what it serves while the group cannot be reached.
// It returns an error only for a site whose boxes disagree on the cameras.
func (p *Placer) Run(ctx context.Context) error {
	var cg *kafka.ConsumerGroup
	for {
		var err error
		if cg, err = p.join(ctx); err == nil {
			break
		}
		if errors.Is(err, errCameras) {
			return err
		}
		p.log.Warn("cannot reach the site's group yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	defer func() {
		cg.Close()
		p.set(nil)
	}()
	var handover *time.Timer
	defer func() {
		if handover != nil {
			handover.Stop()
		}
	}()
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Warn("joining the site's group", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		var now []string
		var parts []int
		for _, pa := range gen.Assignments[p.topic] {
			parts = append(parts, pa.ID)
			now = append(now, p.ids[pa.ID])
		}
		sort.Strings(now)
		p.generations.Inc()
		p.bal.setOwned(parts)
		if handover != nil {
			handover.Stop()
		}
		// Given up at once; newly given after the handover.
		kept := slices.DeleteFunc(p.Serving(), func(id string) bool { return !slices.Contains(now, id) })
		p.set(kept)
		if len(kept) < len(now) {
			handover = time.AfterFunc(p.cfg.Handover, func() {
				if ctx.Err() == nil {
					p.set(now)
				}
			})
		}
		p.log.Info("cameras placed", "generation", gen.ID, "serving", now)
		done := make(chan struct{})
		gen.Start(func(gctx context.Context) {
			<-gctx.Done()
			close(done)
		})
		select {
		case <-done:
		case <-ctx.Done():
			return nil
		}
	}
}

// errCameras: the placement topic's partitions are not this box's cameras.
var errCameras = errors.New("the site's boxes must share one camera list")

// join makes sure of the site's topic and joins its group.
func (p *Placer) join(ctx context.Context) (*kafka.ConsumerGroup, error) {
	if err := p.cfg.Kafka.EnsureTopic(ctx, p.topic, len(p.ids), nil); err != nil {
		return nil, fmt.Errorf("placement topic %s: %w", p.topic, err)
	}
	dialer, err := p.cfg.Kafka.Dialer()
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ps, err := dialer.LookupPartitions(lctx, "tcp", p.cfg.Kafka.Brokers[0], p.topic)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("placement topic %s: %w", p.topic, err)
	}
	if len(ps) != len(p.ids) {
		return nil, fmt.Errorf("placement topic %s: %d partitions for %d cameras: %w", p.topic, len(ps), len(p.ids), errCameras)
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: "veil-placement-" + p.cfg.Site, Brokers: p.cfg.Kafka.Brokers, Dialer: dialer, Topics: []string{p.topic},
		GroupBalancers:    []kafka.GroupBalancer{p.bal},
		HeartbeatInterval: p.cfg.SessionTimeout / 6, SessionTimeout: p.cfg.SessionTimeout, RebalanceTimeout: p.cfg.SessionTimeout,
		JoinGroupBackoff: 500 * time.Millisecond, Timeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("placement: %w", err)
	}
	return cg, nil
}

// set changes what this box serves and tells Serve, when it differs.
func (p *Placer) set(cams []string) {
	p.serveMu.Lock()
	defer p.serveMu.Unlock()
	p.mu.Lock()
	same := slices.Equal(p.serving, cams)
	p.serving = slices.Clone(cams)
	p.mu.Unlock()
	p.cameras.Set(float64(len(cams)))
	if !same {
		p.serve(slices.Clone(cams))
	}
}

// Served is where one of the site's cameras is served.
type Served struct {
	Camera string `json:"camera"`
	// Box serves it; empty while none does (a box died and the group has
	// not yet noticed, or a camera is between boxes).
	Box string `json:"box,omitempty"`
	// Console is that box's console address, if it announced one.
	Console string `json:"console,omitempty"`
	// Here: this box serves it.
	Here bool `json:"here"`
}

// Where asks the group's coordinator which box holds each of the site's
// cameras, in camera order. A camera given to this box that it has not
// started yet (the handover) reads as here.
func (p *Placer) Where(ctx context.Context) ([]Served, error) {
	tr, err := p.cfg.Kafka.Transport()
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(p.cfg.Kafka.Brokers...), Transport: tr, Timeout: 5 * time.Second}
	res, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{"veil-placement-" + p.cfg.Site}})
	if err != nil {
		return nil, fmt.Errorf("placement: describing the site's group: %w", err)
	}
	out := make([]Served, len(p.ids))
	for i, id := range p.ids {
		out[i].Camera = id
	}
	for _, g := range res.Groups {
		if g.Error != nil {
			return nil, fmt.Errorf("placement: describing the site's group: %w", g.Error)
		}
		for _, m := range g.Members {
			var meta member
			if json.Unmarshal(m.MemberMetadata.UserData, &meta) != nil {
				continue
			}
			for _, t := range m.MemberAssignments.Topics {
				if t.Topic != p.topic {
					continue
				}
				for _, pa := range t.Partitions {
					if pa >= 0 && pa < len(out) {
						out[pa].Box, out[pa].Console, out[pa].Here = meta.Box, meta.Console, meta.Box == p.cfg.Box
					}
				}
			}
		}
	}
	return out, nil
}
