// Package publish sends count events to Kafka, keyed by site and camera
// (so each camera's events stay in order on one partition), signed with
// the site's key when it has one, acknowledged by all
// in-sync replicas. Every event is first appended to a durable spool and
// removed only once the broker has it: a broker outage or a veil crash
// loses nothing, and the backlog is sent when the broker is back.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/signing"
	"github.com/veilproject/veil/pipeline/counts/spool"
	"github.com/veilproject/veil/queue"
)

// Config is the publisher's.
type Config struct {
	Kafka kafkaconf.Config
	// SpoolDir holds events not yet acknowledged by the broker. Required.
	SpoolDir string
	// SpoolMaxBytes bounds the spool. It defaults to 64 MiB: at one event
	// of about 300 bytes per camera every 10 s, that is over 200 camera-days
	// of outage. When it is full, new events wait (see Run) and
	// veil_publish_spool_full is 1.
	SpoolMaxBytes int64
	// BatchSize is the most events sent in one request. It defaults to 100.
	BatchSize int
	// FlushInterval is the longest an event waits to be batched. It
	// defaults to 200ms.
	FlushInterval time.Duration
	// SignKey, if set, is the site's key: each event is sent with its
	// signature in the veil-signature header (package signing).
	SignKey signing.Key
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.Kafka.Defaults()
	if c.SpoolMaxBytes == 0 {
		c.SpoolMaxBytes = 64 << 20
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
}

// Validate names the first bad key under prefix.
func (c *Config) Validate(prefix string) error {
	if err := c.Kafka.Validate(prefix + ".kafka"); err != nil {
		return err
	}
	switch {
	case c.SpoolDir == "":
		return fmt.Errorf("%s.spool_dir: required", prefix)
	case c.SpoolMaxBytes < 1<<16:
		return fmt.Errorf("%s.spool_max_bytes: %d is under 64 KiB", prefix, c.SpoolMaxBytes)
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return fmt.Errorf("%s.batch_size: %d is outside [1, 10000]", prefix, c.BatchSize)
	case c.FlushInterval <= 0 || c.FlushInterval > time.Minute:
		return fmt.Errorf("%s.flush_interval: %v is outside (0, 1m]", prefix, c.FlushInterval)
	}
	return nil
}

// Deps are the publisher's wiring.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnSpooled, if set, is called with each event once it is durably in
	// the spool (from then on a crash does not lose it): fleet tests
	// account with it.
	OnSpooled func(footfall.Event)
}

// Publisher moves events from a queue through the spool to Kafka.
type Publisher struct {
	cfg       Config
	log       *slog.Logger
	spool     *spool.Spool
	writer    *kafka.Writer
	tr        *kafka.Transport // the writer's; its idle connections are closed with it
	wake      chan struct{}
	m         metrics
	onSpooled func(footfall.Event)
}

type metrics struct {
	published, errors, retries prometheus.Counter
	full                       prometheus.Gauge
}

// New opens the spool (resuming what a previous run left in it) and
// registers the publisher's metrics.
func New(cfg Config, deps Deps) (*Publisher, error) {
	cfg.Defaults()
	if err := cfg.Validate("publish"); err != nil {
		return nil, err
	}
	if deps.Registerer == nil {
		return nil, errors.New("publish: no metrics registerer")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	tr, err := cfg.Kafka.Transport()
	if err != nil {
		return nil, err
	}
	sp, err := spool.Open(cfg.SpoolDir, cfg.SpoolMaxBytes)
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		cfg:       cfg,
		log:       deps.Logger.With("component", "publish", "topic", cfg.Kafka.Topic),
		spool:     sp,
		wake:      make(chan struct{}, 1),
		tr:        tr,
		onSpooled: deps.OnSpooled,
		writer: &kafka.Writer{
			Addr:         kafka.TCP(cfg.Kafka.Brokers...),
			Topic:        cfg.Kafka.Topic,
			Balancer:     &kafka.Hash{},
			RequiredAcks: kafka.RequireAll,
			MaxAttempts:  1, // retries are ours, with backoff, from the spool
			BatchSize:    cfg.BatchSize,
			BatchTimeout: time.Millisecond,
			WriteTimeout: 10 * time.Second,
			Transport:    tr,
		},
	}
	reg := deps.Registerer
	p.m = metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "veil_publish_events_total", Help: "Count events acknowledged by Kafka."}),
		errors:    prometheus.NewCounter(prometheus.CounterOpts{Name: "veil_publish_errors_total", Help: "Failed sends to Kafka (the events stay in the spool)."}),
		retries:   prometheus.NewCounter(prometheus.CounterOpts{Name: "veil_publish_retries_total", Help: "Sends retried after a failure."}),
		full:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "veil_publish_spool_full", Help: "1 while the spool is full and new count events wait."}),
	}
	collectors := []prometheus.Collector{p.m.published, p.m.errors, p.m.retries, p.m.full,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "veil_publish_spool_events", Help: "Count events in the spool, not yet acknowledged by Kafka."},
			func() float64 { n, _, _ := sp.Stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "veil_publish_spool_bytes", Help: "Bytes in the spool."},
			func() float64 { _, b, _ := sp.Stats(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "veil_publish_spool_oldest_age_seconds", Help: "Age of the oldest event in the spool; 0 when empty."},
			func() float64 {
				if _, _, t := sp.Stats(); !t.IsZero() {
					return time.Since(t).Seconds()
				}
				return 0
			}),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			sp.Close()
			return nil, err
		}
	}
	return p, nil
}

// Close releases the spool and the writer of a publisher that will not
// Run (Run releases them itself).
func (p *Publisher) Close() error {
	defer p.tr.CloseIdleConnections()
	return errors.Join(p.writer.Close(), p.spool.Close())
}

// Run takes events from in until it is closed, spooling each durably, and
// sends the spool to Kafka. When in is closed it keeps sending for up to
// drain (the backlog of a short outage) and returns; whatever is still
// unsent stays in the spool for the next run. Events are never dropped:
// when the spool is full, Run stops taking from in (so the counter waits)
// and logs an error every 30 s.
func (p *Publisher) Run(ctx context.Context, in *queue.Queue[footfall.Event], drain time.Duration) error {
	defer p.Close()
	intakeDone := make(chan error, 1)
	go func() { intakeDone <- p.intake(ctx, in) }()

	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	sendDone := make(chan error, 1)
	go func() { sendDone <- p.send(sendCtx) }()

	err := <-intakeDone
	// Input is over (or ctx ended): give the sender a bounded time to empty
	// the spool, then stop it. Nothing unsent is lost: it is on disk.
	deadline := time.NewTimer(drain)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		if n, _, _ := p.spool.Stats(); n == 0 {
			break
		}
		select {
		case <-deadline.C:
			n, _, _ := p.spool.Stats()
			p.log.Warn("stopping with events still spooled; they are sent on the next start", "events", n, "spool", p.cfg.SpoolDir)
			break wait
		case <-tick.C:
		}
	}
	cancelSend()
	<-sendDone
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func (p *Publisher) intake(ctx context.Context, in *queue.Queue[footfall.Event]) error {
	lastWarn := time.Time{}
	for {
		ev, ok := in.Pop(ctx)
		if !ok {
			return ctx.Err()
		}
		val, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("publish: encoding event: %w", err)
		}
		for {
			err := p.spool.Append([]byte(ev.Source()), val)
			if err == nil {
				p.m.full.Set(0)
				if p.onSpooled != nil {
					p.onSpooled(ev)
				}
				break
			}
			if !errors.Is(err, spool.ErrFull) {
				// A disk error: the event is still in our hands; say so loudly
				// and retry rather than drop it.
				p.log.Error("cannot spool count event; retrying", "err", err, "camera", ev.Camera, "seq", ev.Seq)
			} else if time.Since(lastWarn) > 30*time.Second {
				lastWarn = time.Now()
				p.log.Error("spool full: count events wait until Kafka takes the backlog",
					"spool", p.cfg.SpoolDir, "max_bytes", p.cfg.SpoolMaxBytes)
			}
			p.m.full.Set(1)
			select {
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
				// Shutdown with the spool full: this one event is lost unless
				// we wait; wait a little for the sender, then report it.
				if err := p.spool.Append([]byte(ev.Source()), val); err != nil {
					return fmt.Errorf("publish: shutting down with the spool full: event camera=%s epoch=%d seq=%d not spooled: %w", ev.Camera, ev.Epoch, ev.Seq, err)
				}
				return ctx.Err()
			}
		}
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// send empties the spool into Kafka in order, retrying with exponential
// backoff (100 ms to 30 s, with jitter) while the broker is unreachable.
func (p *Publisher) send(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	failing := false
	for {
		recs, err := p.spool.Peek(p.cfg.BatchSize)
		if err != nil {
			p.log.Error("reading spool", "err", err)
		}
		if len(recs) == 0 {
			select {
			case <-p.wake:
			case <-time.After(p.cfg.FlushInterval):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		msgs := make([]kafka.Message, len(recs))
		for i, r := range recs {
			msgs[i] = kafka.Message{Key: r.Key, Value: r.Value}
			if p.cfg.SignKey != nil {
				msgs[i].Headers = []kafka.Header{{Key: signing.Header, Value: []byte(signing.Sign(p.cfg.SignKey, r.Value))}}
			}
		}
		if err := p.writer.WriteMessages(ctx, msgs...); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.m.errors.Inc()
			if !failing {
				p.log.Error("kafka unreachable: events stay in the spool", "brokers", p.cfg.Kafka.Brokers, "err", err)
				failing = true
			}
			jitter := time.Duration(rand.Int64N(int64(backoff / 2)))
			select {
			case <-time.After(backoff + jitter):
			case <-ctx.Done():
				return ctx.Err()
			}
			backoff = min(2*backoff, 30*time.Second)
			p.m.retries.Inc()
			continue
		}
		if failing {
			p.log.Info("kafka reachable again: sending the spooled backlog", "brokers", p.cfg.Kafka.Brokers)
			failing = false
		}
		backoff = 100 * time.Millisecond
		if err := p.spool.Ack(len(recs)); err != nil {
			// The broker has them but the cursor did not move: they will be
			// sent again, and the exporter drops them as duplicates.
			p.log.Error("spool cursor not saved; events may be resent", "err", err)
		}
		p.m.published.Add(float64(len(recs)))
	}
}
