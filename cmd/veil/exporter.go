package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/veilproject/veil/pipeline/exporter"
	"github.com/veilproject/veil/pipeline/kafkaconf"
)

const exporterUsage = `usage: veil exporter -brokers HOST:PORT[,HOST:PORT...] [flags]

Consumes count events from Kafka as a consumer group and serves them as
Prometheus metrics (veil_footfall_entries_total, veil_footfall_exits_total,
veil_zone_occupancy, veil_zone_capacity), each event applied exactly once.
Runs apart from the counting sites; several can share a group.

flags:
`

func cmdExporter(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("exporter", stderr, exporterUsage)
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated (required)")
	topic := fs.String("topic", kafkaconf.DefaultTopic, "event topic")
	group := fs.String("group", "veil-exporter", "consumer group")
	listen := fs.String("listen", "127.0.0.1:9109", "address serving /metrics")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cfg := exporter.Config{Kafka: kafkaconf.Config{Brokers: splitList(*brokers), Topic: *topic, ClientID: "veil-exporter"}, GroupID: *group}
	cfg.Defaults()
	if err := cfg.Validate("exporter"); err != nil {
		return usageError{fmt.Errorf("-%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "exporter."), "kafka."))}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := exporter.New(cfg, exporter.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	srv, addr, err := serveMetrics(*listen, reg)
	if err != nil {
		return err
	}
	defer shutdown(srv)
	fmt.Fprintf(stdout, "veil exporter: %s from %v, group %s\n  metrics: http://%s/metrics\n", cfg.Kafka.Topic, cfg.Kafka.Brokers, cfg.GroupID, addr)
	return exp.Run(ctx)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// serveMetrics serves reg on /metrics at listen until shutdown.
func serveMetrics(listen string, reg *prometheus.Registry) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			// Serve fails only if the listener breaks; the next scrape shows it.
			_ = err
		}
	}()
	return srv, ln.Addr(), nil
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// embeddedKafka starts an in-process Kafka-protocol broker (kfake) on
// loopback, for the demo: the same publisher and exporter code talks to it
// over TCP as to a real cluster.
func embeddedKafka(ctx context.Context, topic string) (*kfake.Cluster, kafkaconf.Config, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3))
	if err != nil {
		return nil, kafkaconf.Config{}, fmt.Errorf("embedded kafka: %w", err)
	}
	kc := kafkaconf.Config{Brokers: c.ListenAddrs(), Topic: topic, ClientID: "veil"}
	if err := kc.EnsureTopic(ctx, topic, 3, nil); err != nil {
		c.Close()
		return nil, kc, err
	}
	return c, kc, nil
}
