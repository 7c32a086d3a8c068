package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := loadConfig("../../veil.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Cameras) != 3 || !cfg.Cameras[1].WHIP || cfg.Cameras[0].Lines[0].ID != "door" || cfg.Recordings.Keep.Hours() != 72 || cfg.Kafka.Topic != "veil.footfall.v1" {
		t.Errorf("loaded %+v", cfg)
	}
}

func TestComposeConfigLoads(t *testing.T) {
	cfg, err := loadConfig("../../dashboards/compose-veil.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Exporter.Enabled || cfg.Cameras[0].URL == "" {
		t.Errorf("%+v", cfg)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	base := "cameras:\n  - id: a\n    file: x.mp4\n"
	for _, tc := range []struct{ yaml, want string }{
		{"", "cameras: at least one"},
		{"camras: []\n", "field camras not found"},
		{base + "    colour: red\n", "field colour not found"},
		{"cameras:\n  - id: a\n", "cameras[0]: set exactly one of url, file and whip"},
		{"cameras:\n  - id: a\n    whip: true\n", "cameras[0].token:"},
		{"cameras:\n  - id: a\n    url: http://x/y\n", "cameras[0].url:"},
		{"cameras:\n  - id: a b\n    file: x.mp4\n", "cameras[0].id:"},
		{base + "  - id: a\n    file: y.mp4\n", "cameras[1].id:"},
		{base + "    transport: quic\n", "cameras[0].transport:"},
		{base + "    lines: [{id: d, from: [2, 0], to: [0, 1]}]\n", "cameras[0].lines[0].from:"},
		{base + "recordings: {dir: /tmp/r, segment: 10ms}\n", "recordings.segment:"},
		{base + "blur: {mode: gaussian}\n", "blur.mode:"},
		{base + "detector: {threshold: 3}\n", "detector.threshold:"},
		{base + "kafka: {brokers: [nope]}\n", "kafka.brokers[0]:"},
		{base + "exporter: {enabled: true}\n", "exporter.enabled:"},
	} {
		path := filepath.Join(t.TempDir(), "veil.yaml")
		os.WriteFile(path, []byte(tc.yaml), 0o644)
		_, err := loadConfig(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
	t.Setenv("VEIL_KAFKA_BROKERS", "10.1.1.1:9092,10.1.1.2:9092")
	path := filepath.Join(t.TempDir(), "veil.yaml")
	os.WriteFile(path, []byte(base), 0o644)
	cfg, err := loadConfig(path)
	if err != nil || len(cfg.Kafka.Brokers) != 2 {
		t.Errorf("env override: %v %v", err, cfg.Kafka.Brokers)
	}
}

// FuzzParseConfig: any bytes as veil.yaml give a config or an error, never
// a panic; an accepted config passes its own validation again.
func FuzzParseConfig(f *testing.F) {
	example, _ := os.ReadFile("../../veil.example.yaml")
	f.Add(example)
	f.Add([]byte("cameras:\n  - id: a\n    file: x.mp4\n    lines: [{id: d, from: [0, 0], to: [1, 1]}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig("fuzz.yaml", b)
		if err != nil {
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("accepted, then invalid: %v", err)
		}
	})
}
