package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConsoleSelfSignedTLS: with http.tls.self_signed, veil run serves the
// console over HTTPS with a certificate it made on first start and logs
// its fingerprint; the next start serves the same certificate; plain HTTP
// gets nothing from it.
func TestConsoleSelfSignedTLS(t *testing.T) {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`cameras:
  - {id: lobby, file: %s, view_token: a-video-wall-token-123}
metrics: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0", tls: {self_signed: true, dir: %s}}
console: {audit: {dir: %s}, privacy: {operator: Sunrise Sales Office, contact: the front desk}}
`, vtest, filepath.Join(dir, "tls"), filepath.Join(dir, "audit"))
	path := writeConfig(t, dir, cfg)
	var fps []string
	for range 2 {
		p := startVeil(t, "run", "-config", path)
		var addr string
		p.waitFor(t, "console address", 60*time.Second, func(lines []string) bool {
			addr = consoleAddr(lines)
			return addr != ""
		})
		_, stderr := p.snapshot()
		m := regexp.MustCompile(`sha256=([0-9a-f]{64})`).FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("no fingerprint logged: %s", stderr)
		}
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := cl.Get("https://" + addr + "/privacy")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		served := sha256.Sum256(resp.TLS.PeerCertificates[0].Raw)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "obscured") || hex.EncodeToString(served[:]) != m[1] {
			t.Errorf("HTTPS /privacy: %d; served %x, logged %s", resp.StatusCode, served, m[1])
		}
		if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
			t.Errorf("no HSTS over HTTPS: %v", resp.Header)
		}
		if resp, err := http.Get("http://" + addr + "/privacy"); err == nil && resp.StatusCode == 200 {
			t.Error("plain HTTP served the console")
		}
		fps = append(fps, m[1])
		p.stop(t, syscall.SIGTERM, 30*time.Second)
	}
	if fps[0] != fps[1] {
		t.Errorf("the certificate changed between starts: %s then %s", fps[0], fps[1])
	}
}
