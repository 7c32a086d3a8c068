package publish

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"go.uber.org/goleak"
)

// No test leaves a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The publisher's behaviour against brokers (outage, crash with a full
// spool) is tested with a real Kafka broker in pipeline/exporter.

func TestConfigValidateNamesKey(t *testing.T) {
	good := func() Config {
		return Config{Kafka: kafkaconf.Config{Brokers: []string{"127.0.0.1:9092"}}, SpoolDir: "/tmp/x"}
	}
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Kafka.Brokers = nil }, "publish.kafka.brokers"},
		{func(c *Config) { c.SpoolDir = "" }, "publish.spool_dir"},
		{func(c *Config) { c.SpoolMaxBytes = 10 }, "publish.spool_max_bytes"},
		{func(c *Config) { c.BatchSize = -1 }, "publish.batch_size"},
		{func(c *Config) { c.FlushInterval = time.Hour }, "publish.flush_interval"},
	} {
		c := good()
		c.Defaults()
		tc.mut(&c)
		if err := c.Validate("publish"); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("got %v, want %s", err, tc.want)
		}
	}
	c := good()
	c.Defaults()
	if err := c.Validate("publish"); err != nil {
		t.Error(err)
	}
}

func TestNewReportsUnusableSpool(t *testing.T) {
	cfg := Config{Kafka: kafkaconf.Config{Brokers: []string{"127.0.0.1:9"}}, SpoolDir: "/proc/veil-spool"}
	if _, err := New(cfg, Deps{Registerer: prometheus.NewRegistry()}); err == nil || !strings.Contains(err.Error(), "/proc/veil-spool") {
		t.Errorf("got %v", err)
	}
}
