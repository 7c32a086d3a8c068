// Package exporter consumes count events from Kafka (as a consumer group)
// and serves them as Prometheus metrics, applying each event exactly once.
//
// How "exactly once" is kept: the exporter's state for each partition (the
// next offset to read, and per camera the totals and the (epoch, seq) of
// the last event applied) is written to a compacted state topic, with acks
// from all in-sync replicas, before the exporter exposes it. Whoever owns
// a partition (this process after a restart, or another member after a
// rebalance) loads that state and resumes from its offset, not from the
// group's committed offset; events between the saved offset and a crash are
// applied again onto the saved totals, so they count once. An event whose
// (epoch, seq) is not after its camera's last applied one (a publisher
// resend) is skipped as a duplicate. Only saved state is exported, so a
// counter never goes backwards across a restart and Prometheus' rate() and
// increase() see plain monotonic counters.
package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/signing"
)

// Config is the exporter's.
type Config struct {
	Kafka kafkaconf.Config
	// GroupID is the consumer group. It defaults to veil-exporter.
	GroupID string
	// StateTopic holds the exporter's saved state. It defaults to the
	// event topic with ".exporter-state" appended; it is created compacted.
	StateTopic string
	// MaxSeries bounds the cameras x lines/zones exported, since their ids
	// arrive from outside. It defaults to 10000; events past it are counted
	// as rejected.
	MaxSeries int
	// BatchWait is how long the exporter gathers events before saving state
	// once. It defaults to 50ms.
	BatchWait time.Duration
	// SiteKeysDir, if set, holds each site's keys (package signing): only
	// events signed with a key of the site they name are applied; unsigned
	// events, events of a site with no key here, and wrongly signed ones
	// are counted and skipped.
	SiteKeysDir string
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.Kafka.Defaults()
	if c.GroupID == "" {
		c.GroupID = "veil-exporter"
	}
	if c.StateTopic == "" {
		c.StateTopic = c.Kafka.Topic + ".exporter-state"
	}
	if c.MaxSeries == 0 {
		c.MaxSeries = 10000
	}
	if c.BatchWait == 0 {
		c.BatchWait = 50 * time.Millisecond
	}
}

// Validate names the first bad key under prefix.
func (c *Config) Validate(prefix string) error {
	if err := c.Kafka.Validate(prefix + ".kafka"); err != nil {
		return err
	}
	switch {
	case c.GroupID == "":
		return fmt.Errorf("%s.group_id: required", prefix)
	case c.StateTopic == c.Kafka.Topic:
		return fmt.Errorf("%s.state_topic: must differ from the event topic", prefix)
	case c.MaxSeries < 1:
		return fmt.Errorf("%s.max_series: %d is under 1", prefix, c.MaxSeries)
	case c.BatchWait <= 0 || c.BatchWait > 10*time.Second:
		return fmt.Errorf("%s.batch_wait: %v is outside (0, 10s]", prefix, c.BatchWait)
	}
	return nil
}

// Deps are the exporter's wiring.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnDelay, if set, sees each applied event's delay from its window's
	// end to its counts being exported (benchmarks take exact quantiles
	// from it; the histogram's buckets are coarser).
	OnDelay func(time.Duration)
}

// partState is what is saved per partition.
type partState struct {
	Offset  int64                `json:"offset"` // next offset to read
	Cameras map[string]*camState `json:"cameras"`
}

type camState struct {
	Epoch int64     `json:"epoch"`
	Seq   uint64    `json:"seq"`
	At    time.Time `json:"at"` // window end of the last event applied
	// Runs are where each recent counter run (epoch) of the camera has
	// got to, so that one run's events are judged against that run only:
	// a forged event from a new epoch cannot make a live run's events
	// look like duplicates.
	Runs      []runPos         `json:"runs,omitempty"`
	Entries   map[string]int64 `json:"entries"`
	Exits     map[string]int64 `json:"exits"`
	Occupancy map[string]int   `json:"occupancy"`
	Capacity  map[string]int   `json:"capacity"`
}

func (s *partState) clone() *partState {
	b, _ := json.Marshal(s)
	var c partState
	json.Unmarshal(b, &c)
	if c.Cameras == nil {
		c.Cameras = map[string]*camState{}
	}
	return &c
}

func (s *partState) series() int {
	n := 0
	for _, c := range s.Cameras {
		n += len(c.Entries) + len(c.Occupancy)
	}
	return n
}

// Exporter is a Prometheus collector fed from Kafka.
type Exporter struct {
	cfg    Config
	log    *slog.Logger
	dialer *kafka.Dialer
	tr     *kafka.Transport // the state writer's; its idle connections are closed after Run
	state  *kafka.Writer

	keys *signing.Keyring // nil: events are not checked for signatures

	mu    sync.Mutex
	owned map[int]*partState // saved state of the partitions this member owns

	warnMu sync.Mutex
	warned map[string]bool // sources already logged for a rejected signature

	events   *prometheus.CounterVec
	errs     *prometheus.CounterVec
	lag      *prometheus.GaugeVec
	delay    prometheus.Histogram
	partsOwn prometheus.Gauge

	onDelay func(time.Duration) // Deps.OnDelay
}

var (
	descEntries   = prometheus.NewDesc("veil_footfall_entries_total", "People who entered across a line (exactly once per event).", []string{"site", "camera", "line"}, nil)
	descExits     = prometheus.NewDesc("veil_footfall_exits_total", "People who left across a line (exactly once per event).", []string{"site", "camera", "line"}, nil)
	descOccupancy = prometheus.NewDesc("veil_zone_occupancy", "People in a zone at the end of the last window.", []string{"site", "camera", "zone"}, nil)
	descCapacity  = prometheus.NewDesc("veil_zone_capacity", "A zone's configured capacity (0: none).", []string{"site", "camera", "zone"}, nil)
	descWindowEnd = prometheus.NewDesc("veil_footfall_window_end_timestamp_seconds", "End of the camera's last window applied (Unix seconds): a camera or site whose windows stop arriving falls behind time().", []string{"site", "camera"}, nil)
)

// New checks cfg and registers the exporter on deps.Registerer.
func New(cfg Config, deps Deps) (*Exporter, error) {
	cfg.Defaults()
	if err := cfg.Validate("exporter"); err != nil {
		return nil, err
	}
	if deps.Registerer == nil {
		return nil, errors.New("exporter: no metrics registerer")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	dialer, err := cfg.Kafka.Dialer()
	if err != nil {
		return nil, err
	}
	tr, err := cfg.Kafka.Transport()
	if err != nil {
		return nil, err
	}
	e := &Exporter{
		cfg:    cfg,
		log:    deps.Logger.With("component", "exporter", "topic", cfg.Kafka.Topic, "group", cfg.GroupID),
		dialer: dialer,
		tr:     tr,
		state: &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Topic: cfg.StateTopic, RequiredAcks: kafka.RequireAll,
			MaxAttempts: 5, BatchTimeout: time.Millisecond, WriteTimeout: 10 * time.Second, Transport: tr},
		owned:   map[int]*partState{},
		warned:  map[string]bool{},
		onDelay: deps.OnDelay,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_exporter_events_total",
			Help: "Count events consumed, by result: applied, duplicate (redelivered or resent, skipped), malformed, unknown_schema, over_limit, implausible (a future epoch, an impossible count: skipped), unsigned and bad_signature (with site keys: no signature, or none of its site's keys signed it)."}, []string{"result"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_exporter_errors_total",
			Help: "Errors talking to Kafka, by operation: fetch, load_state, save_state, commit, group."}, []string{"op"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "veil_exporter_lag_messages",
			Help: "Messages in the partition not yet applied."}, []string{"partition"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "veil_exporter_event_delay_seconds",
			Help: "From the end of an event's window to its counts being exported.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
		partsOwn: prometheus.NewGauge(prometheus.GaugeOpts{Name: "veil_exporter_partitions_owned", Help: "Partitions of the event topic this exporter owns."}),
	}
	if cfg.SiteKeysDir != "" {
		if e.keys, err = signing.OpenKeyring(cfg.SiteKeysDir); err != nil {
			return nil, fmt.Errorf("exporter.site_keys_dir: %w", err)
		}
	}
	for _, r := range []string{"applied", "duplicate", "malformed", "unknown_schema", "over_limit", "implausible", "unsigned", "bad_signature"} {
		e.events.WithLabelValues(r)
	}
	for _, op := range []string{"fetch", "load_state", "save_state", "commit", "group"} {
		e.errs.WithLabelValues(op)
	}
	reg := deps.Registerer
	for _, c := range []prometheus.Collector{e, e.events, e.errs, e.lag, e.delay, e.partsOwn} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- descEntries
	ch <- descExits
	ch <- descOccupancy
	ch <- descCapacity
	ch <- descWindowEnd
}

// merged is one camera's series over every partition this member owns: a
// camera's events normally stay on one partition (they are keyed by
// camera), but a partition count raised later, or hostile writes, can put
// them on two; each series must then still be exported once.
type merged struct {
	entries, exits      map[string]int64
	occupancy, capacity map[string]int
	at                  map[string]time.Time // per zone: when occupancy was reported
	last                time.Time            // the latest window end
}

// mergeLocked sums entries and exits over partitions and takes each
// zone's latest occupancy and capacity. e.mu must be held.
func (e *Exporter) mergeLocked() map[string]*merged {
	out := map[string]*merged{}
	for _, ps := range e.owned {
		for cam, cs := range ps.Cameras {
			m := out[cam]
			if m == nil {
				m = &merged{entries: map[string]int64{}, exits: map[string]int64{}, occupancy: map[string]int{}, capacity: map[string]int{}, at: map[string]time.Time{}}
				out[cam] = m
			}
			for line, n := range cs.Entries {
				m.entries[line] += n
			}
			for line, n := range cs.Exits {
				m.exits[line] += n
			}
			if cs.At.After(m.last) {
				m.last = cs.At
			}
			for zone, n := range cs.Occupancy {
				if t, ok := m.at[zone]; !ok || cs.At.After(t) {
					m.occupancy[zone], m.capacity[zone], m.at[zone] = n, cs.Capacity[zone], cs.At
				}
			}
		}
	}
	return out
}

// Collect implements prometheus.Collector: the saved totals of the
// partitions this member owns, one series per camera and line or zone.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for src, m := range e.mergeLocked() {
		site, cam := splitSource(src)
		for line, n := range m.entries {
			ch <- prometheus.MustNewConstMetric(descEntries, prometheus.CounterValue, float64(n), site, cam, line)
		}
		for line, n := range m.exits {
			ch <- prometheus.MustNewConstMetric(descExits, prometheus.CounterValue, float64(n), site, cam, line)
		}
		for zone, n := range m.occupancy {
			ch <- prometheus.MustNewConstMetric(descOccupancy, prometheus.GaugeValue, float64(n), site, cam, zone)
		}
		for zone, n := range m.capacity {
			ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(n), site, cam, zone)
		}
		if !m.last.IsZero() {
			ch <- prometheus.MustNewConstMetric(descWindowEnd, prometheus.GaugeValue, float64(m.last.UnixMilli())/1000, site, cam)
		}
	}
}

// splitSource undoes footfall.SourceOf.
func splitSource(src string) (site, camera string) {
	if i := strings.IndexByte(src, '/'); i >= 0 {
		return src[:i], src[i+1:]
	}
	return "", src
}

// Totals returns the owned saved totals: source (site/camera, or the
// camera of a box with no site) -> line -> {entries, exits}.
func (e *Exporter) Totals() map[string]map[string][2]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]map[string][2]int64{}
	for cam, m := range e.mergeLocked() {
		t := map[string][2]int64{}
		for line := range m.entries {
			t[line] = [2]int64{m.entries[line], m.exits[line]}
		}
		out[cam] = t
	}
	return out
}

// Run consumes until ctx ends. It creates the event and state topics if
// they are missing.
func (e *Exporter) Run(ctx context.Context) error {
	defer e.tr.CloseIdleConnections()
	defer e.state.Close()
	if err := e.cfg.Kafka.EnsureTopic(ctx, e.cfg.StateTopic, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		return err
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                e.cfg.GroupID,
		Brokers:           e.cfg.Kafka.Brokers,
		Dialer:            e.dialer,
		Topics:            []string{e.cfg.Kafka.Topic},
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		Timeout:           5 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("exporter: %w", err)
	}
	closed := make(chan struct{})
	go func() {
		<-ctx.Done()
		cg.Close() // ends the current generation, waiting for its partitions
		close(closed)
	}()
	for {
		// The partition count is read before joining, so that partitions
		// created while the group forms are noticed (see watchPartitions).
		before := e.partitionCount(ctx)
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				<-closed
				return nil
			}
			e.errs.WithLabelValues("group").Inc()
			e.log.Warn("consumer group", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		parts := gen.Assignments[e.cfg.Kafka.Topic]
		e.log.Info("partitions assigned", "generation", gen.ID, "partitions", len(parts))
		for _, pa := range parts {
			gen.Start(func(gctx context.Context) { e.partition(gctx, gen, pa) })
		}
		gen.Start(func(gctx context.Context) { e.watchPartitions(gctx, before) })
	}
}

// watchPartitions ends the generation (so the group rebalances and every
// partition is assigned) when the event topic's partition count differs
// from before, the count read before this generation was joined. An
// exporter that starts before the topic has its partitions (a fresh
// broker, compose starting everything at once) is assigned none, and
// would otherwise never consume; so would one when partitions are added.
// (kafka-go's own watcher takes its baseline after the join, so a topic
// created while the group forms went unnoticed: a flaky cold start.)
func (e *Exporter) watchPartitions(ctx context.Context, before int) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := e.partitionCount(ctx)
		if n < 0 {
			continue
		}
		if before < 0 {
			before = n
			continue
		}
		if n != before {
			e.log.Info("event topic partitions changed; rebalancing", "from", before, "to", n)
			return
		}
	}
}

// partitionCount is the event topic's number of partitions: 0 while the
// topic does not exist, -1 when the brokers cannot say.
func (e *Exporter) partitionCount(ctx context.Context) int {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, b := range e.cfg.Kafka.Brokers {
		ps, err := e.dialer.LookupPartitions(lctx, "tcp", b, e.cfg.Kafka.Topic)
		if errors.Is(err, kafka.UnknownTopicOrPartition) {
			return 0
		}
		if err == nil {
			return len(ps)
		}
	}
	return -1
}

func (e *Exporter) stateKey(p int) []byte {
	return []byte(e.cfg.Kafka.Topic + "/" + strconv.Itoa(p))
}

// partition owns one partition for one generation: it loads the
// partition's saved state, then applies batches of events until the
// generation ends.
func (e *Exporter) partition(gctx context.Context, gen *kafka.Generation, pa kafka.PartitionAssignment) {
	p := pa.ID
	log := e.log.With("partition", p)
	st := e.awaitState(gctx, p, log)
	if st == nil {
		return // the generation ended first
	}
	start := st.Offset
	if start < 0 {
		start = pa.Offset // no saved state: the group's offset, or the first
	}
	e.own(p, st)
	defer e.disown(p)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.cfg.Kafka.Brokers, Topic: e.cfg.Kafka.Topic, Partition: p,
		Dialer: e.dialer, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		log.Error("seek", "offset", start, "err", err)
		return
	}
	log.Info("consuming", "offset", start)
	lag := e.lag.WithLabelValues(strconv.Itoa(p))
	var committed time.Time
	for gctx.Err() == nil {
		msg, err := r.FetchMessage(gctx)
		if err != nil {
			if gctx.Err() == nil {
				e.errs.WithLabelValues("fetch").Inc()
				log.Warn("fetch", "err", err)
				sleep(gctx, 500*time.Millisecond)
			}
			continue
		}
		if st = e.batch(gctx, r, p, st, msg, log); st == nil {
			return
		}
		// The group's offset is informational only (lag tools, a fresh
		// state topic): the saved state is what resumes. So it is committed
		// at most once a second, not after every batch, where its round
		// trip to the coordinator held the next batch back.
		if time.Since(committed) >= time.Second {
			committed = time.Now()
			if err := gen.CommitOffsets(map[string]map[int]int64{e.cfg.Kafka.Topic: {p: st.Offset}}); err != nil {
				e.errs.WithLabelValues("commit").Inc()
			}
		}
		lag.Set(float64(max(r.Stats().Lag, 0)))
	}
}

// awaitState loads partition p's saved state, retrying until it loads or
// ctx ends (nil).
func (e *Exporter) awaitState(ctx context.Context, p int, log *slog.Logger) *partState {
	for {
		st, err := e.loadState(ctx, p)
		if err == nil {
			return st
		}
		if ctx.Err() != nil {
			return nil
		}
		e.errs.WithLabelValues("load_state").Inc()
		log.Warn("loading saved state", "err", err)
		if !sleep(ctx, time.Second) {
			return nil
		}
	}
}

func (e *Exporter) own(p int, st *partState) {
	e.mu.Lock()
	e.owned[p] = st
	e.partsOwn.Set(float64(len(e.owned)))
	e.mu.Unlock()
}

func (e *Exporter) disown(p int) {
	e.mu.Lock()
	delete(e.owned, p)
	e.partsOwn.Set(float64(len(e.owned)))
	e.mu.Unlock()
	e.lag.DeleteLabelValues(strconv.Itoa(p))
}

// batch applies msg and whatever else arrives within BatchWait to a copy
// of st, saves it, and makes it the partition's state; nil if it could not
// be saved (the partition stops, and its next owner reads the batch again
// from the saved offset).
func (e *Exporter) batch(gctx context.Context, r *kafka.Reader, p int, st *partState, msg kafka.Message, log *slog.Logger) *partState {
	work := st.clone()
	var ends []time.Time
	e.apply(work, msg, &ends)
	bctx, cancel := context.WithTimeout(gctx, e.cfg.BatchWait)
	for n := 1; n < 1000; n++ {
		m, err := r.FetchMessage(bctx)
		if err != nil {
			break
		}
		e.apply(work, m, &ends)
	}
	cancel()
	if err := e.saveState(context.WithoutCancel(gctx), p, work); err != nil {
		e.errs.WithLabelValues("save_state").Inc()
		log.Error("saving state: stopping this partition", "err", err)
		return nil
	}
	e.own(p, work)
	for _, end := range ends {
		d := time.Since(end)
		e.delay.Observe(d.Seconds())
		if e.onDelay != nil {
			e.onDelay(d)
		}
	}
	return work
}

// sleep waits d or until ctx ends; it says whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// apply adds one message to the working state.
func (e *Exporter) apply(st *partState, msg kafka.Message, ends *[]time.Time) {
	st.Offset = msg.Offset + 1
	ev, err := footfall.Parse(msg.Value)
	if err != nil {
		result := "malformed"
		if errors.Is(err, footfall.ErrSchema) {
			result = "unknown_schema"
		}
		e.events.WithLabelValues(result).Inc()
		e.log.Warn("skipping bad event", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return
	}
	if result := e.checkSignature(ev, msg); result != "" {
		e.events.WithLabelValues(result).Inc()
		return
	}
	if why := implausible(ev, time.Now()); why != "" {
		// One event from a hostile or broken writer must not freeze a
		// camera (an epoch far ahead makes every real event a "duplicate",
		// for good, once saved) or inflate its totals without bound.
		e.events.WithLabelValues("implausible").Inc()
		e.log.Warn("skipping implausible event", "partition", msg.Partition, "offset", msg.Offset, "camera", ev.Camera, "why", why)
		return
	}
	cs := st.Cameras[ev.Source()]
	if cs != nil {
		switch dup, why := cs.judge(ev); {
		case dup:
			e.events.WithLabelValues("duplicate").Inc()
			return
		case why != "":
			e.events.WithLabelValues("implausible").Inc()
			e.log.Warn("skipping implausible event", "partition", msg.Partition, "offset", msg.Offset, "camera", ev.Camera, "why", why)
			return
		}
	} else if why := firstOfRun(ev); why != "" {
		e.events.WithLabelValues("implausible").Inc()
		e.log.Warn("skipping implausible event", "partition", msg.Partition, "offset", msg.Offset, "camera", ev.Camera, "why", why)
		return
	}
	if cs == nil {
		cs = &camState{Entries: map[string]int64{}, Exits: map[string]int64{}, Occupancy: map[string]int{}, Capacity: map[string]int{}}
	}
	newSeries := 0
	for _, l := range ev.Lines {
		if _, ok := cs.Entries[l.ID]; !ok {
			newSeries++
		}
	}
	for _, z := range ev.Zones {
		if _, ok := cs.Occupancy[z.ID]; !ok {
			newSeries++
		}
	}
	if newSeries > 0 && st.series()+newSeries > e.cfg.MaxSeries {
		e.events.WithLabelValues("over_limit").Inc()
		e.log.Error("event would exceed max_series: skipped", "camera", ev.Camera, "max_series", e.cfg.MaxSeries)
		return
	}
	st.Cameras[ev.Source()] = cs
	cs.Epoch, cs.Seq, cs.At = ev.Epoch, ev.Seq, ev.WindowEnd
	cs.advance(ev, time.Now())
	for _, l := range ev.Lines {
		cs.Entries[l.ID] += int64(l.Entries)
		cs.Exits[l.ID] += int64(l.Exits)
	}
	for _, z := range ev.Zones {
		cs.Occupancy[z.ID] = z.Occupancy
		cs.Capacity[z.ID] = z.Capacity
	}
	e.events.WithLabelValues("applied").Inc()
	*ends = append(*ends, ev.WindowEnd)
}

// checkSignature is "" for an event the exporter may apply, or the result
// it is counted as: with site keys, only an event signed by a key of the
// site it names. Each source is logged once (up to maxWarned of them), so
// a hostile writer cannot fill the log.
func (e *Exporter) checkSignature(ev footfall.Event, msg kafka.Message) string {
	if e.keys == nil {
		return ""
	}
	var sig string
	for _, h := range msg.Headers {
		if h.Key == signing.Header {
			sig = string(h.Value)
		}
	}
	result, why := "", ""
	switch keys := e.keys.Keys(ev.Site); {
	case sig == "":
		result, why = "unsigned", "no signature"
	case ev.Site == "":
		result, why = "bad_signature", "no site in the event"
	case len(keys) == 0:
		result, why = "bad_signature", "no key for the site"
	case !signing.Verify(keys, msg.Value, sig):
		result, why = "bad_signature", "not signed by a key of the site"
	default:
		return ""
	}
	e.warnMu.Lock()
	first := !e.warned[ev.Source()] && len(e.warned) < maxWarned
	if first {
		e.warned[ev.Source()] = true
	}
	e.warnMu.Unlock()
	if first {
		e.log.Warn("rejecting count events from this source (logged once)", "site", ev.Site, "camera", ev.Camera,
			"why", why, "partition", msg.Partition, "offset", msg.Offset)
	}
	return result
}

// maxWarned bounds the sources remembered as logged.
const maxWarned = 1024

// runPos is where one counter run of a camera has got to.
type runPos struct {
	Epoch   int64     `json:"epoch"`
	Seq     uint64    `json:"seq"`
	End     time.Time `json:"end"`     // its last window's end
	Applied time.Time `json:"applied"` // when, by this exporter's clock
}

// maxRuns is how many runs of a camera are followed at once: restarts
// with events still in flight. A forgotten run's event would count as a
// new run's; the publisher resends a run's events in order and soon, long
// before that many newer runs have begun.
const maxRuns = 8

// judge places ev among its camera's runs: a duplicate (its run is past
// its seq), or why it is implausible, or neither (apply it). Within a run, seq moves one a window: a seq further
// ahead than ev's windows allow is forged, as it would make the run's
// real events duplicates.
func (cs *camState) judge(ev footfall.Event) (dup bool, why string) {
	if len(cs.Runs) == 0 && cs.Epoch != 0 { // state saved before runs were kept
		cs.Runs = []runPos{{Epoch: cs.Epoch, Seq: cs.Seq, End: cs.At}}
	}
	for _, r := range cs.Runs {
		if r.Epoch != ev.Epoch {
			continue
		}
		if ev.Seq <= r.Seq {
			return true, ""
		}
		if !ev.WindowEnd.After(r.End) {
			return false, "a later seq with an earlier window"
		}
		if gap := ev.Seq - r.Seq; gap > windowsBetween(r.End, ev.WindowEnd, ev)+2 {
			return false, fmt.Sprintf("seq %d is %d ahead of the run's seq %d: more than its windows allow", ev.Seq, gap, r.Seq)
		}
		return false, ""
	}
	return false, firstOfRun(ev)
}

// firstOfRun says why ev cannot be the first seen of its run: a run
// counts its windows from 0 from its epoch, so its seq cannot be ahead of
// the windows since then.
func firstOfRun(ev footfall.Event) string {
	if max := windowsBetween(time.UnixMilli(ev.Epoch), ev.WindowEnd, ev) + 2; ev.Seq > max {
		return fmt.Sprintf("seq %d is more than the %d windows since its epoch", ev.Seq, max)
	}
	return ""
}

// windowsBetween is how many of ev's windows fit between from and to.
func windowsBetween(from, to time.Time, ev footfall.Event) uint64 {
	win := ev.WindowEnd.Sub(ev.WindowStart)
	if win <= 0 || !to.After(from) {
		return 0
	}
	return uint64(to.Sub(from) / win)
}

// advance records ev as its run's latest, following at most maxRuns runs
// (the least recently applied is forgotten).
func (cs *camState) advance(ev footfall.Event, now time.Time) {
	for i := range cs.Runs {
		if cs.Runs[i].Epoch == ev.Epoch {
			cs.Runs[i] = runPos{Epoch: ev.Epoch, Seq: ev.Seq, End: ev.WindowEnd, Applied: now}
			return
		}
	}
	cs.Runs = append(cs.Runs, runPos{Epoch: ev.Epoch, Seq: ev.Seq, End: ev.WindowEnd, Applied: now})
	if len(cs.Runs) > maxRuns {
		old := 0
		for i := range cs.Runs {
			if cs.Runs[i].Applied.Before(cs.Runs[old].Applied) {
				old = i
			}
		}
		cs.Runs = append(cs.Runs[:old], cs.Runs[old+1:]...)
	}
}

// Bounds of a plausible event. A counter's epoch is the wall time it
// started (ms), so one more than a day ahead of this clock is forged or
// from a broken clock; a window is at most an hour (the counter's window
// is seconds to minutes), and no line sees more than 20 people a second
// through it; no zone holds more than 100,000 people.
const (
	maxEpochAhead   = 24 * time.Hour
	maxWindow       = time.Hour
	maxPerSecond    = 20
	maxZonePeople   = 100000
	minWindowCounts = 100 // what a short window may still count
)

// implausible says why ev cannot be a real count event, or "".
func implausible(ev footfall.Event, now time.Time) string {
	if ev.Epoch > now.Add(maxEpochAhead).UnixMilli() {
		return "epoch in the future"
	}
	win := ev.WindowEnd.Sub(ev.WindowStart)
	if win > maxWindow {
		return "window longer than an hour"
	}
	limit := max(minWindowCounts, int(win.Seconds()*maxPerSecond))
	for _, l := range ev.Lines {
		if l.Entries > limit || l.Exits > limit {
			return fmt.Sprintf("line %s: more than %d crossings in %s", l.ID, limit, win)
		}
	}
	for _, z := range ev.Zones {
		if z.Occupancy > maxZonePeople || z.Peak > maxZonePeople || z.Capacity > maxZonePeople {
			return fmt.Sprintf("zone %s: more than %d people", z.ID, maxZonePeople)
		}
	}
	return ""
}

func (e *Exporter) saveState(ctx context.Context, p int, st *partState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return e.state.WriteMessages(ctx, kafka.Message{Key: e.stateKey(p), Value: b})
}

// stateOffsets are the state topic's first and next offsets, from its
// leader, found through whichever broker answers.
func (e *Exporter) stateOffsets(ctx context.Context) (first, last int64, err error) {
	var errs []error
	for _, b := range e.cfg.Kafka.Brokers {
		conn, err := e.dialer.DialLeader(ctx, "tcp", b, e.cfg.StateTopic, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		first, last, err = conn.ReadOffsets()
		conn.Close()
		if err == nil {
			return first, last, nil
		}
		errs = append(errs, err)
	}
	return 0, 0, fmt.Errorf("state topic %s: %w", e.cfg.StateTopic, errors.Join(errs...))
}

// loadState reads the state topic to its end and returns the latest saved
// state for partition p (Offset -1 when there is none).
func (e *Exporter) loadState(ctx context.Context, p int) (*partState, error) {
	empty := &partState{Offset: -1, Cameras: map[string]*camState{}}
	first, last, err := e.stateOffsets(ctx)
	if err != nil {
		return nil, err
	}
	if last <= first {
		return empty, nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.cfg.Kafka.Brokers, Topic: e.cfg.StateTopic, Partition: 0,
		Dialer: e.dialer, MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return nil, err
	}
	key := string(e.stateKey(p))
	var latest []byte
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return nil, err
		}
		if string(m.Key) == key {
			latest = m.Value
		}
		if m.Offset >= last-1 {
			break
		}
	}
	if latest == nil {
		return empty, nil
	}
	var st partState
	if err := json.Unmarshal(latest, &st); err != nil {
		return nil, fmt.Errorf("state topic %s: corrupt state for %s: %w", e.cfg.StateTopic, key, err)
	}
	if st.Cameras == nil {
		st.Cameras = map[string]*camState{}
	}
	return &st, nil
}

var _ prometheus.Collector = (*Exporter)(nil)
