package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Env lists every environment variable veil reads as an override, with the
// key it replaces. This file is the only place that reads them.
var Env = []struct{ Name, Key string }{
	{"VEIL_METRICS_LISTEN", "metrics.listen"},
	{"VEIL_METRICS_TOKEN", "metrics.bearer_token (and bearer_token_file)"},
	{"VEIL_KAFKA_BROKERS", "kafka.brokers (comma-separated)"},
	{"VEIL_KAFKA_PASSWORD", "kafka.sasl.password"},
	{"VEIL_SITE", "site"},
	{"VEIL_SITE_KEY", "site_key_file (the key itself, hex)"},
	{"VEIL_BOX", "placement.box"},
	{"VEIL_RECORDINGS_DIR", "recordings.dir"},
	{"VEIL_MODEL_DIR", "detector.model_dir"},
	{"VEIL_WHIP_TOKEN_<CAMERA>", "cameras[].token (camera id in upper case, - and . as _)"},
	{"VEIL_CAMERA_PASSWORD_<CAMERA>", "the password in cameras[].url (kept out of the file)"},
	{"VEIL_VIEW_TOKEN_<CAMERA>", "cameras[].view_token"},
}

// ApplyEnv sets the keys that getenv overrides. It runs after the file is
// decoded and before Defaults. It returns the overrides it applied, as
// NAME=value, sorted: part of what the audited digest covers.
func ApplyEnv(c *Config, getenv func(string) string) []string {
	var applied []string
	inner := getenv
	getenv = func(name string) string {
		v := inner(name)
		if v != "" {
			applied = append(applied, name+"="+v)
		}
		return v
	}
	defer slices.Sort(applied)
	if v := getenv("VEIL_METRICS_LISTEN"); v != "" {
		c.Metrics.Listen = v
	}
	if v := getenv("VEIL_METRICS_TOKEN"); v != "" {
		c.Metrics.BearerToken, c.Metrics.BearerTokenFile = v, ""
	}
	if v := getenv("VEIL_KAFKA_BROKERS"); v != "" {
		c.Kafka.Brokers = SplitList(v)
	}
	if v := getenv("VEIL_KAFKA_PASSWORD"); v != "" {
		c.Kafka.SASL.Password = v
	}
	if v := getenv("VEIL_SITE"); v != "" {
		c.Site = v
	}
	if v := inner("VEIL_SITE_KEY"); v != "" {
		// The key itself stays out of the audited list of overrides.
		c.SiteKey, c.SiteKeyFile = v, ""
		applied = append(applied, "VEIL_SITE_KEY=(set)")
	}
	if v := getenv("VEIL_BOX"); v != "" {
		c.Placement.Box = v
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
		if v := getenv(ViewTokenEnv(c.Cameras[i].ID)); v != "" {
			c.Cameras[i].ViewToken = v
		}
		if v := getenv(CameraPasswordEnv(c.Cameras[i].ID)); v != "" && c.Cameras[i].URL != "" {
			c.Cameras[i].URL = withPassword(c.Cameras[i].URL, v)
		}
	}
	return applied
}

// WHIPTokenEnv is the variable that overrides a camera's WHIP token.
func WHIPTokenEnv(camera string) string { return "VEIL_WHIP_TOKEN_" + envName(camera) }

// CameraPasswordEnv is the variable that sets the password of a camera's
// URL.
func CameraPasswordEnv(camera string) string { return "VEIL_CAMERA_PASSWORD_" + envName(camera) }

// ViewTokenEnv is the variable that overrides a camera's view token.
func ViewTokenEnv(camera string) string { return "VEIL_VIEW_TOKEN_" + envName(camera) }

func envName(camera string) string {
	return strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(camera))
}

// withPassword sets the password of raw's user (an unparsable URL is left
// for validation to report).
func withPassword(raw, password string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, password)
	return u.String()
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

// ExporterToken is the bearer token that the standalone exporter's
// /metrics requires, from $VEIL_METRICS_TOKEN as for veil run: required
// when listen is reachable from the network (the series name every site
// and camera). The standalone exporter serves plain HTTP; off loopback,
// put TLS in front of it.
func ExporterToken(listen string, getenv func(string) string) (string, error) {
	var c Config
	ApplyEnv(&c, getenv)
	m := c.Metrics
	m.Listen, m.Insecure = listen, true
	if err := m.validate(); err != nil {
		return "", fmt.Errorf("-listen: %w", err)
	}
	return m.BearerToken, nil
}
