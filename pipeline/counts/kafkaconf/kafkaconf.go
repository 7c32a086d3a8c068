// Package kafkaconf is the Kafka connection configuration shared by the
// publisher and the exporter: brokers, client id, TLS and SASL.
package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Config says how to reach the brokers.
type Config struct {
	// Brokers are host:port addresses. Required.
	Brokers []string `yaml:"brokers"`
	// Topic carries count events. It defaults to veil.footfall.v1.
	Topic string `yaml:"topic"`
	// ClientID names veil to the brokers. It defaults to veil.
	ClientID string `yaml:"client_id"`
	TLS      TLS    `yaml:"tls"`
	SASL     SASL   `yaml:"sasl"`
}

// TLS is off unless Enabled.
type TLS struct {
	Enabled bool `yaml:"enabled"`
	// CAFile verifies the brokers; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify disables verification (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL is off unless Mechanism is set.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password may be left out of the file and given as
	// $VEIL_KAFKA_PASSWORD (see pipeline/config).
	Password string `yaml:"password"`
}

// DefaultTopic is where count events go.
const DefaultTopic = "veil.footfall.v1"

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.ClientID == "" {
		c.ClientID = "veil"
	}
}

// Validate names the first bad key under prefix.
func (c *Config) Validate(prefix string) error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("%s.brokers: at least one host:port is required", prefix)
	}
	for i, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return fmt.Errorf("%s.brokers[%d]: %q is not host:port", prefix, i, b)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%s.brokers[%d]: bad port in %q", prefix, i, b)
		}
	}
	if c.Topic == "" || len(c.Topic) > 249 {
		return fmt.Errorf("%s.topic: %q is not a valid topic name", prefix, c.Topic)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("%s.tls.cert_file: cert_file and key_file go together", prefix)
	}
	switch c.SASL.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.SASL.Username == "" {
			return fmt.Errorf("%s.sasl.username: required with mechanism %s", prefix, c.SASL.Mechanism)
		}
	default:
		return fmt.Errorf("%s.sasl.mechanism: %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", prefix, c.SASL.Mechanism)
	}
	return nil
}

// Transport builds the kafka-go transport for the writer side.
func (c *Config) Transport() (*kafka.Transport, error) {
	t, m, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{ClientID: c.ClientID, TLS: t, SASL: m, DialTimeout: 5 * time.Second}, nil
}

// Dialer builds the kafka-go dialer for the reader side.
func (c *Config) Dialer() (*kafka.Dialer, error) {
	t, m, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{ClientID: c.ClientID, TLS: t, SASLMechanism: m, Timeout: 5 * time.Second, DualStack: true}, nil
}

func (c *Config) security() (*tls.Config, sasl.Mechanism, error) {
	var tc *tls.Config
	if c.TLS.Enabled {
		tc = &tls.Config{InsecureSkipVerify: c.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("kafka tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("kafka tls.ca_file %s: no certificate in it", c.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		if c.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("kafka tls.cert_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	var m sasl.Mechanism
	var err error
	switch c.SASL.Mechanism {
	case "PLAIN":
		m = plain.Mechanism{Username: c.SASL.Username, Password: c.SASL.Password}
	case "SCRAM-SHA-256":
		m, err = scram.Mechanism(scram.SHA256, c.SASL.Username, c.SASL.Password)
	case "SCRAM-SHA-512":
		m, err = scram.Mechanism(scram.SHA512, c.SASL.Username, c.SASL.Password)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kafka sasl: %w", err)
	}
	return tc, m, nil
}

// EnsureTopic creates topic with the given partitions and topic configs if
// it does not exist yet. kafka.Client routes the request to the
// controller, which some brokers require.
func (c *Config) EnsureTopic(ctx context.Context, topic string, partitions int, configs map[string]string) error {
	tr, err := c.Transport()
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr, Timeout: 10 * time.Second}
	tc := kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: -1}
	for k, v := range configs {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err != nil {
		return fmt.Errorf("kafka %v: creating topic %s: %w", c.Brokers, topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("kafka %v: creating topic %s: %w", c.Brokers, topic, err)
	}
	return nil
}
