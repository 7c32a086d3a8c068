package pipeline

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/veilproject/veil/pipeline/config"
	"github.com/veilproject/veil/pipeline/console"
	"github.com/veilproject/veil/pipeline/counts/exporter"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (cert, key string, pool *x509.CertPool) {
	cert, key, _, err := console.SelfSigned(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(cert)
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return cert, key, pool
}

// TestWHIPOverTLS: with http.tls set, the WHIP endpoint answers over
// HTTPS (a request without a token gets 401) and refuses plain HTTP.
func TestWHIPOverTLS(t *testing.T) {
	cert, key, pool := selfSigned(t)
	yaml := `cameras:
  - id: desk
    whip: true
    token: a-long-enough-token-123
metrics: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0", tls: {cert: ` + cert + `, key: ` + key + `}}
`
	cfg, err := config.Parse("tls.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(cfg, ServiceDeps{Registry: reg, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	addr := svc.Endpoints().WHIP

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/whip/desk", strings.NewReader("v=0"))
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("HTTPS without a token: %d, want 401", resp.StatusCode)
	}
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if resp, err := plain.Post("http://"+addr+"/whip/desk", "application/sdp", strings.NewReader("v=0")); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d, want 400", resp.StatusCode)
		}
	}
	tr.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A certificate that does not load is an error at start, naming the key.
	bad := strings.Replace(yaml, key, cert, 1)
	cfg, _ = config.Parse("tls.yaml", []byte(bad))
	reg = NewRegistry()
	m, _ = NewMetrics(reg)
	if _, err := NewService(cfg, ServiceDeps{Registry: reg, Metrics: m}); err == nil || !strings.Contains(err.Error(), "http.tls") {
		t.Errorf("unloadable key: %v", err)
	}
}

// TestHTTPServersBoundRequests: every server veil runs closes idle and
// slow connections and refuses a body over maxRequestBody before a
// handler has read it all.
func TestHTTPServersBoundRequests(t *testing.T) {
	read := make(chan int64, 1)
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		read <- n
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		}
	}), nil)
	if srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.ReadHeaderTimeout == 0 {
		t.Errorf("timeouts read %v write %v idle %v header %v: each must be set", srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.ReadHeaderTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background()) // waits out net/http's lingering close
	resp, err := http.Post("http://"+ln.Addr().String()+"/", "application/octet-stream", bytes.NewReader(make([]byte, 4*maxRequestBody)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := <-read; resp.StatusCode != http.StatusRequestEntityTooLarge || n > maxRequestBody {
		t.Errorf("a %d-byte body: %d, %d bytes read", 4*maxRequestBody, resp.StatusCode, n)
	}
}

// TestCertificateReloads: a renewed certificate written over the files is
// served without a restart; a broken one leaves the previous in service.
func TestCertificateReloads(t *testing.T) {
	dir := t.TempDir()
	cert, key, _, err := console.SelfSigned(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := newCertReloader("http.tls", cert, key, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.every = 0
	first, _ := r.GetCertificate(nil)
	newCert, newKey, _, err := console.SelfSigned(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{newCert, cert}, {newKey, key}} {
		b, _ := os.ReadFile(p[0])
		os.WriteFile(p[1], b, 0o600)
	}
	later := time.Now().Add(time.Second) // a file system with coarse times
	os.Chtimes(cert, later, later)
	second, _ := r.GetCertificate(nil)
	if bytes.Equal(first.Certificate[0], second.Certificate[0]) {
		t.Error("the renewed certificate was not loaded")
	}
	os.WriteFile(cert, []byte("not a certificate"), 0o600)
	os.Chtimes(cert, later.Add(time.Second), later.Add(time.Second))
	third, _ := r.GetCertificate(nil)
	if !bytes.Equal(second.Certificate[0], third.Certificate[0]) {
		t.Error("a broken certificate file replaced the one in service")
	}
	if _, err := newCertReloader("http.tls", cert, key, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "http.tls") {
		t.Errorf("a broken pair at start: %v", err)
	}
}

// TestExporterServiceToken: the standalone exporter's /metrics takes
// $VEIL_METRICS_TOKEN as veil run's does, and refuses to listen off
// loopback without it (the series name every site and camera).
func TestExporterServiceToken(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := exporter.Config{Kafka: kafkaconf.Config{Brokers: c.ListenAddrs(), Topic: "veil.footfall.v1"}}
	cfg.Defaults()
	t.Setenv("VEIL_METRICS_TOKEN", "")
	if _, err := NewExporterService(cfg, "0.0.0.0:0", NewRegistry(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "-listen") {
		t.Fatalf("off loopback without a token: %v", err)
	}
	const token = "a-long-exporter-metrics-token-1234"
	t.Setenv("VEIL_METRICS_TOKEN", token)
	svc, err := NewExporterService(cfg, "127.0.0.1:0", NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	get := func(bearer string) int {
		req, _ := http.NewRequest("GET", "http://"+svc.Addr()+"/metrics", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		for range 50 {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				return resp.StatusCode
			}
			time.Sleep(100 * time.Millisecond)
		}
		return 0
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", code)
	}
	if code := get("wrong-token-wrong-token-wrong-token"); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d", code)
	}
	if code := get(token); code != http.StatusOK {
		t.Errorf("with the token: %d", code)
	}
}
