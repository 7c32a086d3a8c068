package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/veilproject/veil/pipeline"
	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/counts/exporter"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
)

const exporterUsage = `usage: veil exporter -brokers HOST:PORT[,HOST:PORT...] [flags]

Consumes count events from Kafka as a consumer group and serves them as
Prometheus metrics by site and camera (docs/metrics.md), each event applied
exactly once. Runs apart from the sites; several can share a group.

flags:
`

func cmdExporter(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("exporter", stderr, exporterUsage)
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated (required)")
	topic := fs.String("topic", kafkaconf.DefaultTopic, "event topic")
	group := fs.String("group", "veil-exporter", "consumer group")
	listen := fs.String("listen", "127.0.0.1:9109", "address serving /metrics")
	siteKeys := fs.String("site-keys", "", "directory of site keys (SITE.key, SITE@TAG.key): apply only events signed by their site")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cfg := exporter.Config{Kafka: kafkaconf.Config{Brokers: config.SplitList(*brokers), Topic: *topic, ClientID: "veil-exporter"}, GroupID: *group, SiteKeysDir: *siteKeys}
	cfg.Defaults()
	if err := cfg.Validate("exporter"); err != nil {
		return usageError{fmt.Errorf("-%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "exporter."), "kafka."))}
	}
	svc, err := pipeline.NewExporterService(cfg, *listen, pipeline.NewRegistry(), log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "veil exporter: %s from %v, group %s\n  metrics: http://%s/metrics\n", cfg.Kafka.Topic, cfg.Kafka.Brokers, cfg.GroupID, svc.Addr())
	return svc.Run(ctx)
}
