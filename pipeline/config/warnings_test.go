package config

import (
	"strings"
	"testing"
)

// TestWarnings: each weakening setting is named at start, and a config
// without one warns of nothing.
func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"plain rtsp", "cameras: [{id: lobby, url: \"rtsp://10.0.0.5/s\"}]", "cameras[0].url: camera lobby is read over plain rtsp://"},
		{"sasl plain without tls", "cameras: [{id: lobby, file: x.mp4}]\nkafka: {brokers: [\"k:9092\"], sasl: {mechanism: PLAIN, username: u, password: p}}", "kafka.sasl.mechanism: PLAIN without kafka.tls"},
		{"metrics in the clear", "cameras: [{id: lobby, file: x.mp4}]\nmetrics: {listen: \"0.0.0.0:9108\", bearer_token: 9f86d081884c7d659a2feaa0c55ad015, insecure: true}", "metrics.insecure"},
		{"nothing weak", "cameras: [{id: lobby, url: \"rtsps://10.0.0.5/s\", tls: {insecure_skip_verify: false}}]", ""},
	} {
		c, err := Parse(tc.name, []byte(tc.yaml))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := strings.Join(c.Warnings(), "\n")
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s: warnings %q, want %q", tc.name, got, tc.want)
		}
	}
}
