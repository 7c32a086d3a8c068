package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestPrometheusScrapesVeil starts Debian's prometheus with the repo's
// prometheus.yml (targets pointed at a running `veil demo` and a running
// `veil run`, what compose runs) and the alert rules, and queries its API
// until footfall and pipeline series are there, and every query of the
// operations dashboard returns data for the veil run camera.
// metricsToken is the bearer token /metrics asks for in these tests.
const metricsToken = "9f86d081884c7d659a2feaa0c55ad015"

func TestPrometheusScrapesVeil(t *testing.T) {
	dir := t.TempDir()
	target := startDemo(t, dir, "-fast")
	run := startVeil(t, "run", "-config", writeConfig(t, dir, `cameras:
  - id: lobby
    file: `+vtest+`
    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]
metrics: {listen: "127.0.0.1:0", bearer_token: `+metricsToken+`}
recordings: {dir: `+filepath.Join(dir, "rec")+`, segment: 10s, keep: 1h}
`))
	run.waitFor(t, "metrics address", 60*time.Second, func(l []string) bool { return metricsURL(l) != "" })
	lines, _ := run.snapshot()
	runTarget := strings.TrimSuffix(strings.TrimPrefix(metricsURL(lines), "http://"), "/metrics")
	if resp, err := http.Get(metricsURL(lines)); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without its bearer token: %v %v, want 401", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}

	cfg, err := os.ReadFile("../../dashboards/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfgS := strings.Replace(string(cfg), `"veil:9108"`, `"`+target+`", "`+runTarget+`"`, 1)
	cfgS = strings.Replace(cfgS, "scrape_interval: 5s", "scrape_interval: 1s", 1)
	// Prometheus authenticates with the token compose would hand it.
	tokenFile := filepath.Join(dir, "metrics.token")
	os.WriteFile(tokenFile, []byte(metricsToken+"\n"), 0o600)
	cfgS = strings.Replace(cfgS, "/run/secrets/veil_metrics_token", tokenFile, 1)
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfgS), 0o644)
	rules, _ := os.ReadFile("../../dashboards/alerts.yml")
	os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o644)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	promAddr := l.Addr().String()
	l.Close()
	prom := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+promAddr)
	var promLog strings.Builder
	prom.Stderr = &promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { prom.Process.Signal(syscall.SIGTERM); prom.Wait() }()

	query := func(q string) int {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		return len(r.Data.Result)
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, q := range []string{
		`veil_blur_frames_total{camera="sample",result="obscured"} > 0`,
		`veil_people_crossings_total{camera="sample"}`,
		`veil_footfall_entries_total{camera="sample",line="road"}`,
		`veil_zone_capacity{camera="sample",zone="road_area"} == 8`,
		`time() - veil_footfall_window_end_timestamp_seconds{camera="sample"} < 300`,
		`veil_publish_spool_events`,
		`count(up{job="veil"} == 1) == 2`,
	} {
		for query(q) < 1 {
			if time.Now().After(deadline) {
				t.Fatalf("prometheus has no result for %s\n%s", q, promLog.String())
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// Every per-camera query of the operations dashboard has data for the
	// veil run camera (rates need a few scrapes).
	for _, expr := range dashboardQL(t, "operations.json") {
		if !strings.Contains(expr, "$camera") {
			continue
		}
		q := strings.NewReplacer("$__rate_interval", "1m", "$camera", "lobby").Replace(expr)
		for query(q) < 1 {
			if time.Now().After(deadline) {
				t.Fatalf("veil run's camera has no data for the operations panel %s", expr)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// Every PromQL expression of the dashboards and rules parses and runs in
	// this real Prometheus (Grafana's variables replaced by values).
	for _, expr := range promQL(t) {
		q := strings.NewReplacer("$__rate_interval", "1m", "$camera", ".*", "$site", ".*").Replace(expr)
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if r.Status != "success" {
			t.Errorf("%s: %s", expr, r.Error)
		}
	}
	resp, err := http.Get("http://" + promAddr + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(b), `"type":"alerting"`); n != 11 {
		t.Errorf("prometheus loaded %d alerting rules, want 11: %s", n, fmt.Sprint(len(b)))
	}
}

// promQL collects the expressions of dashboards/grafana/*.json and
// dashboards/alerts.yml.
func promQL(t *testing.T) []string {
	exprs := dashboardQL(t, "footfall.json", "operations.json", "fleet.json")
	b, err := os.ReadFile("../../dashboards/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 25 {
		t.Fatalf("only %d expressions found", len(exprs))
	}
	return exprs
}

// dashboardQL collects the expressions of dashboards/grafana/FILE.
func dashboardQL(t *testing.T, files ...string) []string {
	var exprs []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("../../dashboards/grafana", f))
		if err != nil {
			t.Fatal(err)
		}
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				if e, ok := x["expr"].(string); ok {
					exprs = append(exprs, e)
				}
				for _, c := range x {
					walk(c)
				}
			case []any:
				for _, c := range x {
					walk(c)
				}
			}
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		walk(doc)
	}
	return exprs
}

// startDemo runs `veil demo` on the sample with 1 s windows until the test
// ends, and returns the host:port it serves its page and /metrics on.
func startDemo(t *testing.T, dir string, extra ...string) string {
	args := append([]string{"demo", "-out", dir, "-metrics-listen", "127.0.0.1:0", "-listen", "127.0.0.1:0", "-window", "1s"}, extra...)
	demo := exec.Command(veilBin, args...)
	out, _ := demo.StdoutPipe()
	demo.Stderr = io.Discard
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { demo.Process.Signal(syscall.SIGINT); demo.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := regexp.MustCompile(`metrics: +http://(\S+)/metrics`).FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, out)
			return m[1]
		}
	}
	t.Fatal("demo printed no metrics address")
	return ""
}
