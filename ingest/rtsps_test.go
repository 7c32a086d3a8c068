package ingest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// selfSigned writes a certificate for 127.0.0.1 and its key (PEM), as a
// camera's factory certificate is.
func selfSigned(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ipcam"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, key
}

// syncBuf is a log sink the camera's goroutines write while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestRTSPSWithDigest: an H.265 camera over RTSP over TLS that asks for
// Digest authentication, as office cameras do. With its certificate as the
// CA and the right password, frames flow. A wrong password, or a
// certificate that is not trusted, fails cleanly: no frame, the camera
// down, retries with backoff, and the password in no log line.
func TestRTSPSWithDigest(t *testing.T) {
	cert, key := selfSigned(t)
	port := freePort(t)
	rtspServer(t, port, "--codec", "h265", "--tls", cert, key, "--digest", "admin", "Tr0ub4dor&3")
	trusted, err := RTSPTLS(cert, false)
	if err != nil {
		t.Fatal(err)
	}
	insecure, _ := RTSPTLS("", true)
	system, _ := RTSPTLS("", false)
	base := "127.0.0.1:" + strconv.Itoa(port) + "/cam"
	for _, tc := range []struct {
		name, url string
		tls       *tls.Config
		frames    bool
		logs      string // a log line that must appear
	}{
		{"trusted CA, right password", "rtsps://admin:Tr0ub4dor&3@" + base, trusted, true, "camera connected"},
		{"insecure_skip_verify", "rtsps://admin:Tr0ub4dor&3@" + base, insecure, true, "not verified"},
		{"wrong password", "rtsps://admin:hunter2-wrong@" + base, trusted, false, "401"},
		{"untrusted certificate", "rtsps://admin:Tr0ub4dor&3@" + base, system, false, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuf
			r := startRTSP(t, &RTSP{URL: tc.url, TLS: tc.tls, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if tc.frames {
				f := r.nextFrame(t, 15*time.Second)
				if f.Width != 768 || f.Height != 576 {
					t.Errorf("frame %dx%d", f.Width, f.Height)
				}
				if !hasStreamInfo(r.m.info, "lobby", "H.265", "768", "576") {
					t.Error("no stream info")
				}
			} else {
				time.Sleep(4 * time.Second)
				if n := len(r.q.C()); n != 0 {
					t.Errorf("%d frames without access", n)
				}
				if v := testutil.ToFloat64(r.m.up.WithLabelValues("lobby")); v != 0 {
					t.Error("camera up without access")
				}
				// The first failure at once, the next after the 1 s backoff.
				if n := testutil.ToFloat64(r.m.reconnects.WithLabelValues("lobby")); n < 2 || n > 4 {
					t.Errorf("%v attempts in 4 s, want 2..4 (backoff from 1 s)", n)
				}
			}
			r.cancel()
			for range r.q.C() {
			}
			l := logs.String()
			if !strings.Contains(l, tc.logs) {
				t.Errorf("logs lack %q:\n%s", tc.logs, l)
			}
			for _, secret := range []string{"Tr0ub4dor", "hunter2"} {
				if strings.Contains(l, secret) {
					t.Errorf("a password reached the log:\n%s", l)
				}
			}
		})
	}
}
