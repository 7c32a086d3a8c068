package kafkaconf

import (
	"strings"
	"testing"
)

func TestValidateNamesKey(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "kafka.brokers:"},
		{Config{Brokers: []string{"nohost"}}, "kafka.brokers[0]:"},
		{Config{Brokers: []string{"a:9092", "b:99999"}}, "kafka.brokers[1]:"},
		{Config{Brokers: []string{"a:9092"}, TLS: TLS{CertFile: "c.pem"}}, "kafka.tls.cert_file:"},
		{Config{Brokers: []string{"a:9092"}, SASL: SASL{Mechanism: "GSSAPI"}}, "kafka.sasl.mechanism:"},
		{Config{Brokers: []string{"a:9092"}, SASL: SASL{Mechanism: "PLAIN"}}, "kafka.sasl.username:"},
	} {
		c := tc.cfg
		c.Defaults()
		if err := c.Validate("kafka"); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %s", tc.cfg, err, tc.want)
		}
	}
	c := Config{Brokers: []string{"127.0.0.1:9092"}, SASL: SASL{Mechanism: "SCRAM-SHA-512", Username: "veil", Password: "s3cret"}}
	c.Defaults()
	if err := c.Validate("kafka"); err != nil || c.Topic != DefaultTopic {
		t.Errorf("good config: %v %+v", err, c)
	}
	if _, err := c.Transport(); err != nil {
		t.Error(err)
	}
	c.TLS = TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"}
	if _, err := c.Dialer(); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Errorf("missing CA: %v", err)
	}
}
