package config

import (
	"net/url"
	"strings"
)

// Env lists every environment variable veil reads as an override, with the
// key it replaces. This file is the only place that reads them.
var Env = []struct{ Name, Key string }{
	{"VEIL_METRICS_LISTEN", "metrics.listen"},
	{"VEIL_KAFKA_BROKERS", "kafka.brokers (comma-separated)"},
	{"VEIL_KAFKA_PASSWORD", "kafka.sasl.password"},
	{"VEIL_RECORDINGS_DIR", "recordings.dir"},
	{"VEIL_MODEL_DIR", "detector.model_dir"},
	{"VEIL_WHIP_TOKEN_<CAMERA>", "cameras[].token (camera id in upper case, - and . as _)"},
}

// ApplyEnv sets the keys that getenv overrides. It runs after the file is
// decoded and before Defaults.
func ApplyEnv(c *Config, getenv func(string) string) {
	if v := getenv("VEIL_METRICS_LISTEN"); v != "" {
		c.Metrics.Listen = v
	}
	if v := getenv("VEIL_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = SplitList(v)
	}
	if v := getenv("VEIL_KAFKA_PASSWORD"); v != "" {
		c.Kafka.SASL.Password = v
	}
	if v := getenv("VEIL_RECORDINGS_DIR"); v != "" {
		c.Recordings.Dir = v
	}
	if v := getenv("VEIL_MODEL_DIR"); v != "" {
		c.Detector.ModelDir = v
	}
	for i := range c.Cameras {
		if v := getenv(WHIPTokenEnv(c.Cameras[i].ID)); v != "" {
			c.Cameras[i].Token = v
		}
	}
}

// WHIPTokenEnv is the variable that overrides a camera's WHIP token.
func WHIPTokenEnv(camera string) string {
	return "VEIL_WHIP_TOKEN_" + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(camera))
}

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// redact hides the password of a URL, for errors.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
