package config

import (
	"bufio"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veilproject/veil/pipeline/console"
	"github.com/veilproject/veil/pipeline/output/record/recordconf"
)

// TestTestdata loads every testdata/*.good.yml (must load) and *.bad.yml
// (must fail with the error its first line names), as Prometheus keeps its
// config test files.
func TestTestdata(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yml")
	if len(files) < 20 {
		t.Fatalf("only %d config test files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if strings.HasSuffix(f, ".good.yml") {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			fh, _ := os.Open(f)
			defer fh.Close()
			sc := bufio.NewScanner(fh)
			sc.Scan()
			want, ok := strings.CutPrefix(sc.Text(), "# error: ")
			if !ok {
				t.Fatalf("first line %q is not '# error: ...'", sc.Text())
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want an error containing %q", err, want)
			}
		})
	}
}

func TestShippedConfigsLoad(t *testing.T) {
	t.Setenv("VEIL_WHIP_TOKEN_DESK", "9f86d081884c7d659a2feaa0c55ad015")
	cfg, err := Load("../../veil.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Cameras) != 4 || !strings.HasPrefix(cfg.Cameras[1].URL, "rtsps:") || !cfg.Cameras[2].WHIP || cfg.Cameras[0].Counting.Lines[0].ID != "door" || cfg.Recordings.Keep.Hours() != 72 || cfg.Kafka.Topic != "veil.footfall.v1" {
		t.Errorf("example: %+v", cfg)
	}
	t.Setenv("VEIL_METRICS_TOKEN", "9f86d081884c7d659a2feaa0c55ad015") // in compose, a secret's file
	cfg, err = Load("../../dashboards/compose-veil.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Exporter.Enabled || cfg.Cameras[0].URL == "" {
		t.Errorf("compose: %+v", cfg)
	}
}

func TestDefaultsAndCounting(t *testing.T) {
	cfg, err := Load("testdata/counting.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Cameras[0]
	if !c.Counted() || c.Counting.Window.Seconds() != 5 || c.Counting.Hysteresis != 0.02 || c.Counting.MaxAge != 12 || c.Counting.Lines[0].In != "right_to_left" {
		t.Errorf("per-camera counting: %+v", c.Counting)
	}
	cfg, _ = Load("testdata/minimal.good.yml")
	if cfg.Metrics.Listen != "127.0.0.1:9108" || cfg.SpoolDir != "veil-spool" || cfg.Blur.Deadline.Seconds() != 2 || cfg.Cameras[0].Counted() || cfg.Exporter.GroupID != "veil-exporter" {
		t.Errorf("defaults: %+v", cfg)
	}
}

// TestSetRecordingsDirMovesWhatWasUnderIt: moving recordings.dir after
// Defaults (veil demo -out) moves the spool, TLS and audit directories
// that Defaults derived from it, and leaves those configured on their own.
func TestSetRecordingsDirMovesWhatWasUnderIt(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		before                  Config
		spool, tlsDir, auditDir string
	}{
		{"derived from the old dir", Config{Recordings: recordconf.Config{Dir: "veil-demo"}},
			"/data/spool", "/data/tls", "/data-audit"},
		{"derived with no dir", Config{},
			"/data/spool", "/data/tls", "/data-audit"},
		{"configured on their own", Config{Recordings: recordconf.Config{Dir: "veil-demo"}, SpoolDir: "/q", HTTP: HTTP{TLS: TLSFiles{Dir: "/k"}}, Console: console.Config{Audit: console.AuditConfig{Dir: "/a"}}},
			"/q", "/k", "/a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.before
			c.Defaults()
			c.SetRecordingsDir("/data")
			if c.Recordings.Dir != "/data" || c.SpoolDir != tc.spool || c.HTTP.TLS.Dir != tc.tlsDir || c.Console.Audit.Dir != tc.auditDir {
				t.Errorf("recordings %q, spool %q, tls %q, audit %q; want /data, %q, %q, %q",
					c.Recordings.Dir, c.SpoolDir, c.HTTP.TLS.Dir, c.Console.Audit.Dir, tc.spool, tc.tlsDir, tc.auditDir)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"VEIL_METRICS_LISTEN":        "0.0.0.0:9999",
		"VEIL_METRICS_TOKEN":         "9f86d081884c7d659a2feaa0c55ad015",
		"VEIL_KAFKA_BROKERS":         "10.1.1.1:9092, 10.1.1.2:9092",
		"VEIL_KAFKA_PASSWORD":        "s3cret",
		"VEIL_RECORDINGS_DIR":        "/srv/rec",
		"VEIL_MODEL_DIR":             "/opt/models",
		"VEIL_WHIP_TOKEN_DESK_2":     "a-token-from-the-environment",
		"VEIL_CAMERA_PASSWORD_LOBBY": "p@ss:w/rd",
		"VEIL_VIEW_TOKEN_LOBBY":      "a-video-wall-token-123",
		"VEIL_SITE":                  "nanjing-01",
		"VEIL_BOX":                   "box-b",
		"VEIL_SITE_KEY":              "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	}
	var c Config
	c.Cameras = []Camera{{ID: "desk-2", WHIP: true}, {ID: "lobby", URL: "rtsp://admin@10.0.0.5/Streaming/Channels/101"}}
	c.Metrics.Insecure = true // off loopback in the clear: the file would say so
	c.Console.Privacy = console.Privacy{Operator: "Sunrise Sales Office", Contact: "the front desk"}
	applied := ApplyEnv(&c, func(k string) string { return env[k] })
	if len(applied) != len(env) {
		t.Errorf("applied %d overrides of %d", len(applied), len(env))
	}
	// The digest covers the overrides: a changed token changes it.
	file := []byte("cameras: []")
	d := DigestOf(file, applied)
	env["VEIL_VIEW_TOKEN_LOBBY"] = "another-video-wall-token"
	var c2 Config
	c2.Cameras = []Camera{{ID: "desk-2", WHIP: true}, {ID: "lobby", URL: "rtsp://admin@10.0.0.5/Streaming/Channels/101"}}
	if d2 := DigestOf(file, ApplyEnv(&c2, func(k string) string { return env[k] })); d2 == d || d == DigestOf(file, nil) {
		t.Error("the digest does not follow the overrides")
	}
	env["VEIL_VIEW_TOKEN_LOBBY"] = "a-video-wall-token-123"
	c.Defaults()
	if c.Metrics.Listen != "0.0.0.0:9999" || len(c.Kafka.Brokers) != 2 || c.Kafka.SASL.Password != "s3cret" || c.Recordings.Dir != "/srv/rec" ||
		c.Detector.ModelDir != "/opt/models" || c.Cameras[0].Token != "a-token-from-the-environment" || c.SpoolDir != "/srv/rec/spool" {
		t.Errorf("%+v", c)
	}
	if k, err := c.SigningKey(); err != nil || len(k) != 32 || c.Site != "nanjing-01" || c.Placement.Box != "box-b" || c.Placement.Handover != 3*time.Second {
		t.Errorf("site %q, key from the environment: %d bytes, %v", c.Site, len(k), err)
	}
	for _, a := range applied {
		if strings.Contains(a, "00112233") {
			t.Errorf("the site key is in the audited overrides: %s", a)
		}
	}
	if c.Cameras[1].ViewToken != "a-video-wall-token-123" {
		t.Errorf("view token from the environment: %q", c.Cameras[1].ViewToken)
	}
	if u, err := url.Parse(c.Cameras[1].URL); err != nil || u.User.Username() != "admin" || func() string { p, _ := u.User.Password(); return p }() != "p@ss:w/rd" || u.Path != "/Streaming/Channels/101" {
		t.Errorf("camera password from the environment: %v %v", c.Cameras[1].URL, err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cameras[0].whip") {
		t.Errorf("placement with a WHIP camera: %v", err)
	}
	c.Placement.Box = ""
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	if len(Env) != len(env) {
		t.Errorf("Env documents %d variables, the test sets %d", len(Env), len(env))
	}
	// Parse reads the process environment.
	t.Setenv("VEIL_KAFKA_BROKERS", "10.1.1.1:9092")
	cfg, err := Load("testdata/minimal.good.yml")
	if err != nil || len(cfg.Kafka.Brokers) != 1 {
		t.Errorf("env override through Load: %v %v", err, cfg.Kafka.Brokers)
	}
}

// FuzzParse: any bytes as veil.yaml give a config or an error, never a
// panic; an accepted config passes its own validation again.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	files = append(files, "../../veil.example.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("fuzz.yaml", b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted, then invalid: %v", err)
		}
	})
}
