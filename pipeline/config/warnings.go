package config

import (
	"fmt"
	"strings"
)

// Warnings are the settings that are allowed but weaken what veil
// protects, one sentence each, naming the key: veil logs them at every
// start, so a choice made once is not forgotten.
func (c *Config) Warnings() []string {
	var out []string
	for i, cam := range c.Cameras {
		if strings.HasPrefix(cam.URL, "rtsp://") {
			out = append(out, fmt.Sprintf("cameras[%d].url: camera %s is read over plain rtsp://: its un-obscured video and its password cross the network in clear text; use rtsps:// where the camera offers it", i, cam.ID))
		}
	}
	if len(c.Kafka.Brokers) > 0 && !c.Kafka.TLS.Enabled {
		if strings.EqualFold(c.Kafka.SASL.Mechanism, "PLAIN") {
			out = append(out, "kafka.sasl.mechanism: PLAIN without kafka.tls sends the Kafka password in clear text; enable kafka.tls or use SCRAM-SHA-512")
		}
	}
	if c.Kafka.TLS.InsecureSkipVerify {
		out = append(out, "kafka.tls.insecure_skip_verify: the brokers are not verified: anyone on the path can read and write counts")
	}
	if c.HTTP.Insecure && (c.hasWHIP() || c.ConsoleOn()) {
		out = append(out, "http.insecure: the console and WHIP serve plain HTTP off loopback: passwords, cookies and tokens cross the network in clear text")
	}
	if c.Metrics.Insecure {
		out = append(out, "metrics.insecure: /metrics serves plain HTTP off loopback: its bearer token crosses the network in clear text")
	}
	return out
}
