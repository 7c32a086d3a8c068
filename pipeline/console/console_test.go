package console

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/output/live"
)

func newConsole(t *testing.T) (*Console, *httptest.Server, string) {
	t.Helper()
	h := guardHash()
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec", "lobby")
	os.MkdirAll(rec, 0o755)
	seg := "lobby-" + time.Now().UTC().Format("20060102T150405.000Z") + ".mp4"
	os.WriteFile(filepath.Join(rec, seg), []byte(strings.Repeat("0123456789", 1000)), 0o644)
	os.WriteFile(filepath.Join(dir, "rec", "secret.txt"), []byte("not a recording"), 0o644)
	cfg := Config{Users: []User{{Name: "guard", PasswordHash: string(h), Role: RoleViewer}}, Audit: AuditConfig{Dir: filepath.Join(dir, "audit")}}
	cfg.Defaults("")
	if err := cfg.Validate("console"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	lm, _ := live.NewMetrics(reg)
	c, err := New(cfg, Deps{Cameras: []Camera{{ID: "lobby", Recordings: rec}}, Streams: map[string]*live.Stream{}, Keep: 72 * time.Hour,
		ConfigDigest: "abc", Registerer: reg, Metrics: lm})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() { srv.Close(); c.Close() })
	return c, srv, seg
}

// guardHash is guard-password-1 hashed at the cost users' hashes must
// have, made once (it takes a quarter of a second).
var guardHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("guard-password-1"), passwordCost)
	return h
})

// client is a browser: cookies kept, redirects not followed.
func client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// logIn fetches the login form and posts it; it returns the response and
// the page's CSRF token after login.
func logIn(t *testing.T, cl *http.Client, base, name, pw string) *http.Response {
	t.Helper()
	resp, err := cl.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no csrf on the login form: %s", b)
	}
	resp, err = cl.PostForm(base+"/login", url.Values{"csrf": {string(m[1])}, "name": {name}, "password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestLoginSessionAndCSRF(t *testing.T) {
	c, srv, seg := newConsole(t)
	cl := client()
	// Nothing but the privacy notice without a login.
	if resp, _ := cl.Get(srv.URL + "/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("/ without login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := cl.Get(srv.URL + "/recordings/lobby/" + seg); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a recording without login: %d", resp.StatusCode)
	}
	resp, _ := cl.Get(srv.URL + "/privacy")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "3 days") || !strings.Contains(string(b), "obscured") {
		t.Errorf("/privacy: %d %s", resp.StatusCode, b)
	}
	// A login form posted without its cookie's token (a cross-site post) is refused.
	if resp, _ := client().PostForm(srv.URL+"/login", url.Values{"name": {"guard"}, "password": {"guard-password-1"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login without the form's token: %d", resp.StatusCode)
	}
	resp = logIn(t, cl, srv.URL, "guard", "guard-password-1")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict", sc)
	}
	resp, _ = cl.Get(srv.URL + "/")
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `data-camera="lobby"`) {
		t.Fatalf("grid: %d", resp.StatusCode)
	}
	if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("security headers missing: %v", resp.Header)
	}
	token := csrfField.FindSubmatch(b)[1]
	// A viewer is not an admin.
	if resp, _ := cl.Get(srv.URL + "/admin"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer on /admin: %d", resp.StatusCode)
	}
	// State changes need the session's CSRF token.
	if resp, _ := cl.PostForm(srv.URL+"/logout", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without CSRF: %d", resp.StatusCode)
	}
	// Recordings: a play (audited), range requests (seeking: not audited
	// again); nothing outside the camera's segments.
	if resp, _ := cl.Get(srv.URL + "/recordings/lobby/" + seg); resp.StatusCode != 200 {
		t.Errorf("play: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/recordings/lobby/"+seg, nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, _ = cl.Do(req)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || len(b) != 100 {
		t.Errorf("range: %d, %d bytes", resp.StatusCode, len(b))
	}
	for _, p := range []string{"/recordings/lobby/..%2Fsecret.txt", "/recordings/lobby/secret.txt", "/recordings/garage/" + seg} {
		if resp, _ := cl.Get(srv.URL + p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := cl.Get(srv.URL + "/recordings/lobby/" + seg + "?download"); resp.Header.Get("Content-Disposition") == "" {
		t.Error("download without Content-Disposition")
	}
	// WHEP with the session needs its CSRF header too.
	req, _ = http.NewRequest("POST", srv.URL+"/whep/lobby", strings.NewReader("v=0"))
	req.Header.Set("Content-Type", "application/sdp")
	if resp, _ := cl.Do(req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("WHEP with a session but no CSRF header: %d", resp.StatusCode)
	}
	req.Header.Set(csrfHeader, string(token))
	req.Body = io.NopCloser(strings.NewReader("v=0"))
	if resp, _ := cl.Do(req); resp.StatusCode != http.StatusNotFound { // authorized; lobby has no stream here
		t.Errorf("WHEP with session and CSRF: %d", resp.StatusCode)
	}
	resp, _ = cl.PostForm(srv.URL+"/logout", url.Values{"csrf": {string(token)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	if resp, _ := cl.Get(srv.URL + "/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %d", resp.StatusCode)
	}
	for kind, want := range map[string]float64{AuditLogin: 1, AuditLogout: 1, AuditPlay: 1, AuditDownload: 1, AuditDenied: 1, AuditConfigLoaded: 1} {
		if got := testutil.ToFloat64(c.audit.events.WithLabelValues(kind)); got != want {
			t.Errorf("audit %s: %v, want %v", kind, got, want)
		}
	}
}

// TestLoginRateLimit: five wrong passwords from one address, then even the
// right one is refused for the window; each failure is audited.
func TestLoginRateLimit(t *testing.T) {
	c, srv, _ := newConsole(t)
	cl := client()
	for i := 0; i < maxFailures; i++ {
		if resp := logIn(t, cl, srv.URL, "guard", "wrong"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "error") {
			t.Fatalf("wrong password %d: %d %s", i, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp := logIn(t, cl, srv.URL, "guard", "guard-password-1"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d, want 429", maxFailures, resp.StatusCode)
	}
	if got := testutil.ToFloat64(c.audit.events.WithLabelValues(AuditLoginFailed)); got != maxFailures+1 {
		t.Errorf("failed logins audited: %v", got)
	}
	// An unknown user costs a bcrypt check too (no timing oracle for names).
	start := time.Now()
	check(c.cfg.Users, "nobody", "x")
	if time.Since(start) < 50*time.Millisecond {
		t.Errorf("an unknown user was rejected in %v: faster than a bcrypt check", time.Since(start))
	}
}

func TestConfigValidate(t *testing.T) {
	h := guardHash()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Users: []User{{Name: "a", PasswordHash: "plain", Role: RoleViewer}}}, "users[0].password_hash"},
		{Config{Users: []User{{Name: "a", PasswordHash: string(h), Role: "root"}}}, "users[0].role"},
		{Config{Users: []User{{Name: "a", PasswordHash: string(h), Role: RoleViewer}, {Name: "a", PasswordHash: string(h), Role: RoleAdmin}}}, "users[1].name"},
		{Config{SessionTTL: time.Second}, "session_ttl"},
	} {
		tc.cfg.Defaults("audit")
		err := tc.cfg.Validate("console")
		if err == nil || !strings.Contains(err.Error(), "console."+tc.want) {
			t.Errorf("%+v: %v, want an error naming console.%s", tc.cfg, err, tc.want)
		}
	}
	if _, err := HashPassword("short"); err == nil {
		t.Error("a 5-character password was hashed")
	}
}

// TestSelfSignedIsKept: the certificate is made once and reused, its
// fingerprint stable, its names those given.
func TestSelfSignedIsKept(t *testing.T) {
	dir := t.TempDir()
	cert, key, fp1, err := SelfSigned(dir, []string{"127.0.0.1", "veil.local"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, fp2, err := SelfSigned(dir, []string{"127.0.0.1", "veil.local"})
	if err != nil || fp1 != fp2 || len(fp1) != 64 {
		t.Errorf("second start: %v, fingerprints %s %s", err, fp1, fp2)
	}
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := x509.ParseCertificate(c.Certificate[0])
	if len(x.IPAddresses) != 1 || x.DNSNames[0] != "veil.local" || x.NotAfter.Before(time.Now().Add(700*24*time.Hour)) {
		t.Errorf("certificate %v %v %v", x.IPAddresses, x.DNSNames, x.NotAfter)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode())
	}
	if h := Hosts("0.0.0.0:8443"); len(h) < 4 {
		t.Errorf("hosts for all interfaces: %v", h)
	}
}

// TestChartsByHour: count events land in the hour their window ends in;
// today's charts add them up per line and take zone peaks.
func TestChartsByHour(t *testing.T) {
	c, _, _ := newConsole(t)
	now := time.Now()
	hour := time.Date(now.Year(), now.Month(), now.Day(), now.Hour(), 0, 0, 0, time.Local)
	for i, e := range []footfall.Event{
		{Camera: "lobby", WindowEnd: hour.Add(10 * time.Second), Lines: []footfall.LineCount{{ID: "door", Entries: 2, Exits: 1}}, Zones: []footfall.ZoneCount{{ID: "floor", Peak: 3}}},
		{Camera: "lobby", WindowEnd: hour.Add(20 * time.Second), Lines: []footfall.LineCount{{ID: "door", Entries: 1}}, Zones: []footfall.ZoneCount{{ID: "floor", Peak: 5}}},
		{Camera: "lobby", WindowEnd: hour, Lines: []footfall.LineCount{{ID: "door", Entries: 7}}}, // ends on the hour: the hour before
	} {
		if i == 2 && hour.Hour() == 0 {
			continue // the hour before is yesterday's
		}
		c.Observe(e)
	}
	ch := c.charts("lobby")
	if len(ch) != 2 || ch[0].Title != "line door" || ch[1].Title != "zone floor" {
		t.Fatalf("charts %+v", ch)
	}
	want := "3 in, 1 out today"
	if hour.Hour() > 0 {
		want = "10 in, 1 out today"
	}
	if ch[0].Total != want || ch[1].Total != "peak 5 today" {
		t.Errorf("totals %q %q, want %q and peak 5", ch[0].Total, ch[1].Total, want)
	}
}

// TestDummyHashCostsWhatUsersCost: the hash checked for an unknown name is
// a well-formed bcrypt hash at the cost of users' own, so a login takes as
// long whether or not the name exists, and no password matches it.
func TestDummyHashCostsWhatUsersCost(t *testing.T) {
	cost, err := bcrypt.Cost(dummyHash)
	if err != nil || cost != passwordCost {
		t.Fatalf("dummy hash cost %d (%v), users' %d", cost, err, passwordCost)
	}
	for _, pw := range []string{"", "no such user, no such password!", "hunter2"} {
		if err := bcrypt.CompareHashAndPassword(dummyHash, []byte(pw)); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			t.Errorf("password %q against the dummy hash: %v", pw, err)
		}
	}
}
