package console

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/output/live"
	"github.com/veilproject/veil/pipeline/output/record/recordconf"
)

// auditSize is the audit log's size on disk.
func auditSize(t *testing.T, c *Console) int64 {
	t.Helper()
	var n int64
	for _, f := range c.audit.files() {
		n += f.size
	}
	return n
}

// postLogin posts a login form from addr (the handler is called directly,
// so the client address can be any), with the form's cookie and token.
func postLogin(c *Console, addr, name, pw string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	form := url.Values{"csrf": {"t0ken"}, "name": {name}, "password": {pw}}.Encode()
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = addr
	r.AddCookie(&http.Cookie{Name: loginCookie, Value: "t0ken"})
	for _, ck := range cookies {
		r.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	c.Handler().ServeHTTP(w, r)
	return w
}

// TestAuditFloodIsBounded: a locked-out address posting logins with huge
// names writes one line for the lockout, not one per attempt, and no line
// holds more than the capped name; a body over the cap is refused unread.
func TestAuditFloodIsBounded(t *testing.T) {
	c, _, _ := newConsole(t)
	for i := 0; i < maxFailures; i++ {
		postLogin(c, "10.0.0.9:1000", "guard", "wrong")
	}
	before := auditSize(t, c)
	name := strings.Repeat("<", 1300) // JSON escapes each as \u003c; the form stays under its cap
	for i := 0; i < 200; i++ {
		if w := postLogin(c, "10.0.0.9:1000", name, "x"); w.Code != http.StatusTooManyRequests {
			t.Fatalf("attempt %d while locked out: %d", i, w.Code)
		}
	}
	if grew := auditSize(t, c) - before; grew > 1024 {
		t.Errorf("200 refused logins grew the audit log by %d bytes, want one short line", grew)
	}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("name="+strings.Repeat("a", 1<<20)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	c.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("a 1 MiB login body: %d, want 413", w.Code)
	}
	r = httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("--x\r\n"))
	r.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	w = httptest.NewRecorder()
	c.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("a multipart login: %d, want 415", w.Code)
	}
	for _, e := range c.audit.Recent(50) {
		if len(e.User) > maxNameField+len("…") {
			t.Errorf("an audit line holds a %d-byte name", len(e.User))
		}
	}
}

// TestLoginBurstIsLimited: 40 wrong passwords sent at once from one
// address: no more than the limit are checked, however many password
// checks could run at once.
func TestLoginBurstIsLimited(t *testing.T) {
	c, _, _ := newConsole(t)
	c.checks = make(checks, 64) // the limiter alone must hold
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- postLogin(c, "10.0.0.7:999", "guard", "wrong").Code
		}()
	}
	wg.Wait()
	close(codes)
	checked := 0
	for code := range codes {
		if code == http.StatusSeeOther {
			checked++
		}
	}
	if checked > maxFailures {
		t.Errorf("%d of 40 simultaneous wrong passwords were checked, limit %d", checked, maxFailures)
	}
}

// TestPasswordChecksAreBounded: logins from many addresses at once take
// at most the check slots; the rest are refused at once with Retry-After,
// rather than queueing for the cores.
func TestPasswordChecksAreBounded(t *testing.T) {
	c, _, _ := newConsole(t)
	c.cfg.Users[0].PasswordHash = string(dummyHash) // cost 12: slow enough to overlap
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[int]int{}
	start := make(chan struct{})
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			w := postLogin(c, fmt.Sprintf("10.1.0.%d:1", i), "guard", "wrong")
			mu.Lock()
			got[w.Code]++
			mu.Unlock()
			if w.Code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
				t.Error("busy without Retry-After")
			}
		}()
	}
	close(start)
	wg.Wait()
	if got[http.StatusServiceUnavailable] == 0 || got[http.StatusSeeOther] == 0 || got[http.StatusSeeOther] > 16-got[http.StatusServiceUnavailable] {
		t.Errorf("16 logins at once with %d check slots: %v", cap(c.checks), got)
	}
}

// TestLockoutSparesTheGuardsBrowser: others' failures against a name lock
// out that name for new browsers, with growing delays, but never the
// browser the guard logged in from before, even from the same address.
func TestLockoutSparesTheGuardsBrowser(t *testing.T) {
	c, _, _ := newConsole(t)
	w := postLogin(c, "10.0.0.1:1", "guard", "guard-password-1")
	var device *http.Cookie
	for _, ck := range w.Result().Cookies() {
		if ck.Name == deviceCookie {
			device = ck
		}
	}
	if w.Code != http.StatusSeeOther || device == nil || !device.HttpOnly {
		t.Fatalf("first login: %d, device cookie %+v", w.Code, device)
	}
	for i := 0; i < maxFailures; i++ { // an attacker, from the guard's address too
		postLogin(c, "10.0.0.1:2", "guard", "guess")
	}
	if w := postLogin(c, "10.0.0.2:1", "guard", "guard-password-1"); w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "Try again after") || w.Header().Get("Retry-After") == "" {
		t.Errorf("a new browser, the name locked: %d %q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := postLogin(c, "10.0.0.1:3", "guard", "guard-password-1", device); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Errorf("the guard's own browser: %d %s, want logged in", w.Code, w.Header().Get("Location"))
	}
	// A cookie signed for another name is no help.
	if id := c.dev.id(httptest.NewRequest("GET", "/", nil), "guard"); id != "" {
		t.Error("a request without a cookie has a device")
	}
	forged := &http.Cookie{Name: deviceCookie, Value: strings.Repeat("a", 32) + "." + c.dev.sign("admin", strings.Repeat("a", 32))}
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(forged)
	if c.dev.id(r, "guard") != "" {
		t.Error("a device cookie signed for admin passed for guard")
	}
}

// TestLockoutGrows: each failure past the limit doubles the lockout, up
// to its bound; a success clears it.
func TestLockoutGrows(t *testing.T) {
	l := newLimiter()
	now := time.Unix(1700000000, 0)
	l.now = func() time.Time { return now }
	var locks []time.Duration
	for i := 0; i < maxFailures+9; i++ {
		ok, why, _ := l.reserve("k")
		if !ok {
			now = why.until // wait it out
			ok, _, _ = l.reserve("k")
			if !ok {
				t.Fatalf("attempt %d refused after waiting", i)
			}
		}
		l.settle(true, "k")
		if a := l.keys["k"]; a.until.After(now) {
			locks = append(locks, a.until.Sub(now))
		}
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour, time.Hour, time.Hour}
	if fmt.Sprint(locks) != fmt.Sprint(want) {
		t.Errorf("lockouts %v, want %v", locks, want)
	}
	now = now.Add(2 * time.Hour)
	ok, _, suppressed := l.reserve("k")
	l.settle(false, "k")
	if !ok || suppressed != nil || l.keys["k"] != nil {
		t.Errorf("after the lockout a success: ok %v, suppressed %v, key %+v", ok, suppressed, l.keys["k"])
	}
}

// TestAuditIsCappedAndReadFromTheEnd: past max_bytes the oldest files go
// (counted), the log stays within its bound, and Recent reads the newest
// entries in order without reading whole files.
func TestAuditIsCappedAndReadFromTheEnd(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	a, err := NewAudit(AuditConfig{Dir: dir, Keep: 90 * 24 * time.Hour, MaxBytes: 1 << 20}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not the log's"), 0o600)
	at := time.Now().UTC()
	for i := range 30000 {
		if err := a.Log(Event{Time: at, Kind: AuditLoginFailed, User: fmt.Sprintf("user-%06d", i), Detail: strings.Repeat("x", 60)}); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, f := range a.files() {
		total += f.size
	}
	if total > 1<<20+a.fileMax || total < 1<<19 {
		t.Errorf("the log holds %d bytes, bound %d", total, 1<<20)
	}
	if testutil.ToFloat64(a.pruned.WithLabelValues("size")) == 0 {
		t.Error("no file deleted for size")
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Error("a file that is not the log's was deleted")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	got := a.Recent(3)
	runtime.ReadMemStats(&ms)
	if len(got) != 3 || got[0].User != "user-029999" || got[2].User != "user-029997" {
		t.Errorf("Recent(3): %+v", got)
	}
	if ms.TotalAlloc-before > 512<<10 {
		t.Errorf("Recent(3) allocated %d bytes: it read more than the end", ms.TotalAlloc-before)
	}
	// Entries across a file boundary come back whole and in order.
	all := a.Recent(5000)
	for i := 1; i < len(all); i++ {
		if all[i].User >= all[i-1].User {
			t.Fatalf("Recent out of order at %d: %s after %s", i, all[i].User, all[i-1].User)
		}
	}
	if len(all) != 5000 {
		t.Errorf("Recent(5000): %d", len(all))
	}
}

// TestRecordingFetchesAreAudited: a recording fetched with any range (a
// suffix, spaces, a leading zero, several ranges) is audited once per
// login and file, and a download is a download whatever the range.
func TestRecordingFetchesAreAudited(t *testing.T) {
	c, srv, seg := newConsole(t)
	// A segment's last write is its end, a minute after its name's time (the
	// file system's clock may lag the name's by a tick).
	start, _ := time.Parse("20060102T150405.000Z", recordconf.SegmentName.FindStringSubmatch(seg)[1])
	os.Chtimes(filepath.Join(c.cams["lobby"].Recordings, seg), start.Add(time.Minute), start.Add(time.Minute))
	cl := client()
	logIn(t, cl, srv.URL, "guard", "guard-password-1")
	for _, rg := range []string{"bytes=-1000000", "bytes= 0-", "bytes=00-", "bytes=0-10,20-30"} {
		req, _ := http.NewRequest("GET", srv.URL+"/recordings/lobby/"+seg, nil)
		req.Header.Set("Range", rg)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := testutil.ToFloat64(c.audit.events.WithLabelValues(AuditPlay)); got != 1 {
		t.Errorf("plays audited: %v, want 1 (first fetch; the rest within %v)", got, auditRepeat)
	}
	// The line says which part of the day was watched: the segment's span.
	if ev := c.audit.Recent(1); len(ev) != 1 || ev[0].Kind != AuditPlay || ev[0].Start.IsZero() || !ev[0].End.After(ev[0].Start) ||
		ev[0].Start.UTC().Format("20060102T150405.000Z") != recordconf.SegmentName.FindStringSubmatch(seg)[1] {
		t.Errorf("play audited as %+v: want the segment's start and end", ev)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/recordings/lobby/"+seg+"?download", nil)
	req.Header.Set("Range", "bytes=5-")
	resp, _ := cl.Do(req)
	resp.Body.Close()
	if got := testutil.ToFloat64(c.audit.events.WithLabelValues(AuditDownload)); got != 1 {
		t.Errorf("downloads audited: %v, want 1", got)
	}
	// Another login of the same user is audited again.
	cl2 := client()
	logIn(t, cl2, srv.URL, "guard", "guard-password-1")
	req, _ = http.NewRequest("GET", srv.URL+"/recordings/lobby/"+seg, nil)
	req.Header.Set("Range", "bytes=-10")
	resp, _ = cl2.Do(req)
	resp.Body.Close()
	if got := testutil.ToFloat64(c.audit.events.WithLabelValues(AuditPlay)); got != 2 {
		t.Errorf("plays audited after a second login: %v, want 2", got)
	}
}

// TestLiveViewStartIsAuditedFirst: a view's start is in the audit log
// before any picture is sent, and a view whose start cannot be written is
// refused.
func TestLiveViewStartIsAuditedFirst(t *testing.T) {
	c, _, _ := newConsole(t)
	ev := live.SessionEvent{Viewer: live.Viewer{Who: "guard", From: "10.0.0.1"}, Camera: "lobby", Start: time.Now()}
	if err := c.whep.Started(ev); err != nil {
		t.Fatal(err)
	}
	if got := c.audit.Recent(1); len(got) != 1 || got[0].Kind != AuditLiveViewStart || got[0].User != "guard" {
		t.Errorf("after a start: %+v", got)
	}
	c.audit.Close()
	os.RemoveAll(c.cfg.Audit.Dir)
	os.WriteFile(c.cfg.Audit.Dir, nil, 0o600) // the directory is now a file: unwritable
	if err := c.whep.Started(ev); err == nil {
		t.Error("a view started with the audit log unwritable")
	}
}

// TestPrivacyNoticeSaysWhatIsTrue: each claim of the notice follows the
// configuration: a claim is made only where the code makes it true, and
// the notice admits what the code cannot promise (a missed face, a
// downloaded copy).
func TestPrivacyNoticeSaysWhatIsTrue(t *testing.T) {
	notice := func(t *testing.T, cams []Camera, keep time.Duration, users bool, counting, exported bool) string {
		cfg := Config{Audit: AuditConfig{Dir: t.TempDir()}}
		if users {
			cfg.Users = []User{{Name: "guard", PasswordHash: string(guardHash()), Role: RoleViewer}}
		}
		cfg.Defaults("")
		reg := prometheus.NewRegistry()
		lm, _ := live.NewMetrics(reg)
		c, err := New(cfg, Deps{Cameras: cams, Streams: map[string]*live.Stream{}, Keep: keep, Registerer: reg, Metrics: lm,
			Counting: counting, CountsExported: exported})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		w := httptest.NewRecorder()
		c.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/privacy", nil))
		return w.Body.String()
	}
	recorded := []Camera{{ID: "lobby", Recordings: t.TempDir()}}
	for _, tc := range []struct {
		name                string
		cams                []Camera
		keep                time.Duration
		users, count, kafka bool
		want, not           []string
	}{
		{"recorded, users, counting kept here", recorded, 72 * time.Hour, true, true, false,
			[]string{"3 days, then deleted automatically", "Staff can download a recording", "a face it misses", "Anonymous counts", "audit log"},
			[]string{"video wall", "statistics system", "not recorded"}},
		{"not recorded", []Camera{{ID: "lobby"}}, 0, true, false, false,
			[]string{"Video is not recorded"},
			[]string{"deleted automatically", "Staff can download", "Anonymous counts"}},
		{"view tokens and counts sent on", []Camera{{ID: "lobby", ViewToken: "x", Recordings: t.TempDir()}}, 24 * time.Hour, false, true, true,
			[]string{"video wall screens given an access key", "sent to", "24 hours"},
			[]string{"Staff can download"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := notice(t, tc.cams, tc.keep, tc.users, tc.count, tc.kafka)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("the notice lacks %q", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("the notice claims %q", n)
				}
			}
			if strings.Contains(got, "every face is obscured") || strings.Contains(got, "no face is stored") {
				t.Error("the notice promises more than detection can")
			}
		})
	}
}

// FuzzAuditTail: whatever bytes an audit file holds (a torn write, a
// disk error, a hand edit), reading its end neither panics nor returns
// more entries than asked, and finds every whole entry written after the
// damage.
func FuzzAuditTail(f *testing.F) {
	f.Add([]byte("{\"kind\":\"login\"}\n"), 3)
	f.Add([]byte("garbage\x00\xff{\"kind\":"), 1)
	f.Add([]byte(strings.Repeat("x", 70000)), 2)
	f.Fuzz(func(t *testing.T, junk []byte, n int) {
		n = (n%10+10)%10 + 1
		dir := t.TempDir()
		path := filepath.Join(dir, "audit-2026-12-07.jsonl")
		good := `{"time":"2026-12-07T10:00:00Z","kind":"login","user":"guard"}` + "\n"
		os.WriteFile(path, append(append(append([]byte(nil), junk...), '\n'), good...), 0o600)
		got := tailEvents(path, n, nil)
		if len(got) > n || len(got) == 0 || got[0].User != "guard" {
			t.Fatalf("%d entries (asked %d), first %+v", len(got), n, got)
		}
	})
}

// FuzzDeviceCookie: no cookie value but one signed for the name passes.
func FuzzDeviceCookie(f *testing.F) {
	d := &devices{key: []byte("0123456789abcdef0123456789abcdef")}
	f.Add(d.issue("guard"), "guard")
	f.Add("x.y", "guard")
	f.Add(strings.Repeat("a", 32)+".", "")
	f.Fuzz(func(t *testing.T, value, name string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", deviceCookie+"="+value)
		id := d.id(r, name)
		if id == "" {
			return
		}
		c, _ := r.Cookie(deviceCookie)
		want := id + "." + d.sign(name, id)
		if c.Value != want {
			t.Fatalf("%q passed for %q without its signature", value, name)
		}
	})
}

// TestLoginErrorsAreFixedCodes: /login?error= shows only the console's
// own messages; any other text in the link is not echoed.
func TestLoginErrorsAreFixedCodes(t *testing.T) {
	c, _, _ := newConsole(t)
	for _, tc := range []struct{ q, want, not string }{
		{"wrong", "Wrong name or password.", ""},
		{"Your+account+is+suspended,+call+0800", "", "suspended"},
	} {
		w := httptest.NewRecorder()
		c.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/login?error="+tc.q, nil))
		body := w.Body.String()
		if tc.want != "" && !strings.Contains(body, tc.want) || tc.not != "" && strings.Contains(body, tc.not) {
			t.Errorf("?error=%s: the page shows %q", tc.q, regexp.MustCompile(`<p class="error"[^<]*</p>`).FindString(body))
		}
	}
}

// TestPrivacyNoticeSpeaksChinese: the notice is in Simplified Chinese for
// a browser that prefers it, in English otherwise, and either on asking
// (?lang=); both name the handler and the contact, say how to use one's
// rights, the counts' retention and the notice's date.
func TestPrivacyNoticeSpeaksChinese(t *testing.T) {
	cfg := Config{Audit: AuditConfig{Dir: t.TempDir()}, Privacy: Privacy{Operator: "阳光售楼处 Sunrise Sales Office", Contact: "前台 the front desk",
		CountsKeep: 365 * 24 * time.Hour, Updated: "2026-12-07"}}
	cfg.Defaults("")
	reg := prometheus.NewRegistry()
	lm, _ := live.NewMetrics(reg)
	c, err := New(cfg, Deps{Cameras: []Camera{{ID: "lobby", Recordings: t.TempDir()}}, Streams: map[string]*live.Stream{}, Keep: 72 * time.Hour,
		Registerer: reg, Metrics: lm, Counting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name, accept, query string
		lang                string
		want                []string
	}{
		{"a Chinese browser", "zh-CN,zh;q=0.9,en;q=0.8", "", "zh-CN", []string{"本场所的摄像头", "保存 3 天", "查阅、复制、更正和删除", "联系前台 the front desk", "阳光售楼处", "保存 365 天", "本告知更新于 2026-12-07", "漏检"}},
		{"an English browser", "en-US,en;q=0.9", "", "en", []string{"Cameras on these premises", "3 days, then deleted", "see, copy, correct and delete", "kept for 365 days", "updated on 2026-12-07"}},
		{"English preferred over Chinese", "en;q=0.9,zh;q=0.5", "", "en", []string{"Cameras on these premises"}},
		{"no preference", "", "", "en", []string{"Cameras on these premises"}},
		{"the switch", "en", "?lang=zh", "zh-CN", []string{"本场所的摄像头"}},
		{"the printable sign", "zh-CN", "?print&lang=zh", "zh-CN", []string{"本场所的摄像头", "font-size: 18px"}},
	} {
		r := httptest.NewRequest("GET", "/privacy"+tc.query, nil)
		if tc.accept != "" {
			r.Header.Set("Accept-Language", tc.accept)
		}
		w := httptest.NewRecorder()
		c.Handler().ServeHTTP(w, r)
		body := w.Body.String()
		if !strings.Contains(body, `<html lang="`+tc.lang+`">`) || w.Header().Get("Content-Language") != tc.lang {
			t.Errorf("%s: not served as %s (%s)", tc.name, tc.lang, w.Header().Get("Content-Language"))
		}
		for _, want := range tc.want {
			if !strings.Contains(body, want) {
				t.Errorf("%s: the notice lacks %q", tc.name, want)
			}
		}
	}
}

// openLobby is a console with one camera, lobby, on cfg (defaults filled),
// as a restart opens it again on the same directory.
func openLobby(t *testing.T, cfg Config) *Console {
	t.Helper()
	cfg.Defaults("")
	reg := prometheus.NewRegistry()
	lm, _ := live.NewMetrics(reg)
	c, err := New(cfg, Deps{Cameras: []Camera{{ID: "lobby"}}, Streams: map[string]*live.Stream{}, Registerer: reg, Metrics: lm})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCountsSurviveARestart: today's charts come back after a restart
// (they went from 18 in / 26 out to 1 in / 3 out before), and a damaged
// counts file starts them from zero instead of stopping the console.
func TestCountsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *Console { return openLobby(t, Config{Audit: AuditConfig{Dir: dir}}) }
	c := open()
	now := time.Now()
	for i := range 3 {
		c.Observe(footfall.Event{Camera: "lobby", WindowEnd: now.Add(-time.Duration(i) * time.Second),
			Lines: []footfall.LineCount{{ID: "door", Entries: 6, Exits: 9}}, Zones: []footfall.ZoneCount{{ID: "floor", Peak: 4}}})
	}
	before := c.charts("lobby")
	c.Close()
	c = open()
	after := c.charts("lobby")
	c.Close()
	if len(before) != 2 || fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("charts before the restart %+v, after %+v", before, after)
	}
	os.WriteFile(filepath.Join(dir, countsFile), []byte("{not json"), 0o600)
	c = open()
	defer c.Close()
	if got := c.charts("lobby"); len(got) != 0 {
		t.Errorf("charts from a damaged file: %+v", got)
	}
}

// TestCountsChartsAndCSV: a camera's page draws today's counts with a y
// axis, the hours and a legend, and the counts download as CSV (for a
// logged-in user only).
func TestCountsChartsAndCSV(t *testing.T) {
	c, srv, _ := newConsole(t)
	hour := time.Now().Truncate(time.Hour)
	c.Observe(footfall.Event{Camera: "lobby", WindowEnd: hour.Add(10 * time.Second),
		Lines: []footfall.LineCount{{ID: "door", Entries: 7, Exits: 3}}, Zones: []footfall.ZoneCount{{ID: "floor", Peak: 5}}})
	if resp, _ := client().Get(srv.URL + "/counts/lobby.csv"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("counts without a login: %d", resp.StatusCode)
	}
	cl := client()
	logIn(t, cl, srv.URL, "guard", "guard-password-1")
	resp, err := cl.Get(srv.URL + "/camera/lobby")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	strip := fmt.Sprintf(`title="%02d:00 7 in, 3 out"`, hour.Hour())
	for _, want := range []string{`text-anchor="end">7</text>`, `>12</text>`, `class="key in"`, `peak occupancy in the hour`, `href="/counts/lobby.csv"`, `id="timeline-counts"`, strip} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the camera page lacks %s", want)
		}
	}
	resp, err = cl.Get(srv.URL + "/counts/lobby.csv")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h := fmt.Sprintf("%02d:00", hour.Hour())
	for _, want := range []string{"day,hour,kind,id,entries,exits,peak_occupancy", h + ",line,door,7,3,", h + ",zone,floor,,,5"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the CSV lacks %q:\n%s", want, body)
		}
	}
	if resp, _ := cl.Get(srv.URL + "/counts/garage.csv"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown camera's counts: %d", resp.StatusCode)
	}
}

// TestCountsDayByDay: finished days are kept (across a restart, within
// privacy.counts_keep), charted day by day for the last 7 days or a
// chosen range, and exported as CSV for a range.
func TestCountsDayByDay(t *testing.T) {
	dir := t.TempDir()
	open := func() *Console {
		return openLobby(t, Config{Audit: AuditConfig{Dir: dir}, Privacy: Privacy{CountsKeep: 30 * 24 * time.Hour},
			Users: []User{{Name: "guard", PasswordHash: string(guardHash()), Role: RoleViewer}}})
	}
	c := open()
	noon := time.Now().Truncate(24 * time.Hour).Add(12 * time.Hour).Local()
	day := func(back int) time.Time {
		return time.Date(noon.Year(), noon.Month(), noon.Day()-back, 12, 0, 0, 0, time.Local)
	}
	for _, back := range []int{40, 3, 1, 0} { // oldest first, as windows arrive
		c.Observe(footfall.Event{Camera: "lobby", WindowEnd: day(back), Lines: []footfall.LineCount{{ID: "door", Entries: 10 + back, Exits: back}},
			Zones: []footfall.ZoneCount{{ID: "floor", Peak: back}}})
	}
	c.Close()
	c = open() // the days come back from the file
	defer c.Close()
	f := func(back int) string { return day(back).Format("2006-01-02") }
	week := c.rangeCharts("lobby", daysIn(day(6), day(0)))
	if len(week) != 2 || week[0].Total != fmt.Sprintf("%d in, %d out, %s – %s", 13+11+10, 3+1, f(6), f(0)) || week[1].Total != fmt.Sprintf("peak 3, %s – %s", f(6), f(0)) {
		t.Errorf("the last 7 days: %+v", week)
	}
	if got := c.rangeCharts("lobby", daysIn(day(45), day(35))); len(got) != 0 {
		t.Errorf("a day past counts_keep (30 days) is still charted: %+v", got)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	cl := client()
	logIn(t, cl, srv.URL, "guard", "guard-password-1")
	resp, err := cl.Get(srv.URL + "/camera/lobby?cfrom=" + f(3) + "&cto=" + f(1))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{fmt.Sprintf("24 in, 4 out, %s – %s", f(3), f(1)), `href="/counts/lobby.csv?from=` + f(3), `>` + f(2)[5:] + `</text>`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the camera page lacks %q", want)
		}
	}
	resp, err = cl.Get(srv.URL + "/counts/lobby.csv?from=" + f(3) + "&to=" + f(0))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{f(3) + ",11:00,line,door,13,3,", f(1) + ",11:00,line,door,11,1,", f(0) + ",11:00,line,door,10,0,"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the CSV lacks %q:\n%s", want, body)
		}
	}
	if resp, _ := cl.Get(srv.URL + "/counts/lobby.csv?from=" + f(0) + "&to=" + f(3)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a reversed range: %d", resp.StatusCode)
	}
}

// TestAuditFilterAndExport: the admin page filters the audit log by kind,
// user and camera, and exports what the filter picks as CSV; the export
// is itself audited, and a viewer gets neither.
func TestAuditFilterAndExport(t *testing.T) {
	c, srv, _ := newConsole(t)
	viewer := client()
	logIn(t, viewer, srv.URL, "guard", "guard-password-1")
	if resp, _ := viewer.Get(srv.URL + "/admin/audit.csv"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer exporting the audit log: %d", resp.StatusCode)
	}
	c.cfg.Users[0].Role = RoleAdmin
	logIn(t, client(), srv.URL, "mallory", "a guess")
	logIn(t, client(), srv.URL, "guard", "wrong")
	admin := client()
	logIn(t, admin, srv.URL, "guard", "guard-password-1")
	get := func(path string) string {
		resp, err := admin.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	page := get("/admin?kind=login_failed&user=mallory")
	if !strings.Contains(page, "<td>mallory</td>") || strings.Contains(page, "<td>login</td>") {
		t.Errorf("the filtered page shows other entries, or not mallory's")
	}
	csv := get("/admin/audit.csv?kind=login_failed")
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if lines[0] != "time,kind,user,from,camera,file,start,end,detail" || len(lines) != 3 {
		t.Errorf("the export of failed logins:\n%s", csv)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, ",login_failed,") {
			t.Errorf("the export holds %q", l)
		}
	}
	if got := c.audit.Recent(1); got[0].Kind != AuditExport || got[0].User != "guard" {
		t.Errorf("the export was not audited: %+v", got[0])
	}
}

// TestClipExport: "10:15:02 to 10:15:06" is cut from the two segments that
// hold it into one MP4 of about four seconds (real ffmpeg, no
// re-encoding), audited as a download with its times; bad times are
// refused, and a span with no recording is a 404.
func TestClipExport(t *testing.T) {
	c, srv, _ := newConsole(t)
	dir := c.cams["lobby"].Recordings
	day := time.Now()
	at := func(h, m, s int) time.Time {
		return time.Date(day.Year(), day.Month(), day.Day(), h, m, s, 0, time.Local)
	}
	for _, start := range []time.Time{at(10, 15, 0), at(10, 15, 4)} {
		name := "lobby-" + start.UTC().Format("20060102T150405.000Z") + ".mp4"
		if out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-t", "4",
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "5", "-pix_fmt", "yuv420p", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	cl := client()
	logIn(t, cl, srv.URL, "guard", "guard-password-1")
	q := "/clip/lobby?day=" + day.Format("2006-01-02")
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"&from=10:15:06&to=10:15:02", http.StatusBadRequest},
		{"&from=10:15&to=12:15", http.StatusBadRequest},
		{"&from=11:00&to=11:05", http.StatusNotFound},
	} {
		if resp, _ := cl.Get(srv.URL + q + tc.query); resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.query, resp.StatusCode, tc.want)
		}
	}
	// While clipWorkers clips are being cut, another waits its turn.
	for range clipWorkers {
		c.clips <- struct{}{}
	}
	if resp, _ := cl.Get(srv.URL + q + "&from=10:15:02&to=10:15:06"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a clip while %d are cut: %d, want 503 with Retry-After", clipWorkers, resp.StatusCode)
	}
	for range clipWorkers {
		<-c.clips
	}
	resp, err := cl.Get(srv.URL + q + "&from=10:15:02&to=10:15:06")
	if err != nil {
		t.Fatal(err)
	}
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	os.WriteFile(clip, b, 0o600)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "lobby-") {
		t.Fatalf("clip: %d %v", resp.StatusCode, resp.Header)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", clip).Output()
	d, _ := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || d < 3.4 || d > 5 {
		t.Errorf("the clip lasts %v s (%v), want about 4", d, err)
	}
	e := c.audit.Recent(1)[0]
	if e.Kind != AuditDownload || e.Detail != "clip, stamped" || !e.Start.Equal(at(10, 15, 2)) || !e.End.Equal(at(10, 15, 6)) {
		t.Errorf("the clip's audit entry: %+v", e)
	}
	// The stamp is the camera and the time of day of each frame: the clip's
	// frame at 3 s (10:15:05, in the second segment) carries the stamp
	// ffmpeg draws for that time, not one for a second later.
	stampAt := func(text string) []byte {
		t.Helper()
		vf := "drawtext=font='DejaVu Sans Mono':fontsize=h/24:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=6:x=12:y=12:text='" +
			strings.ReplaceAll(text, ":", `\:`) + "',crop=200:24:0:6,format=gray"
		out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-frames:v", "1",
			"-vf", vf, "-f", "rawvideo", "-").Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got, err := exec.Command("ffmpeg", "-v", "error", "-ss", "3.05", "-i", clip, "-frames:v", "1", "-vf", "crop=200:24:0:6,format=gray", "-f", "rawvideo", "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	right, wrong := stampAt("lobby  "+at(10, 15, 5).Format("2006-01-02 15:04:05")), stampAt("lobby  "+at(10, 15, 6).Format("2006-01-02 15:04:05"))
	if dr, dw := meanDiff(got, right), meanDiff(got, wrong); dr > dw/2 {
		t.Errorf("the stamp at 3 s is not 10:15:05: %.1f from it, %.1f from 10:15:06", dr, dw)
	}
	// raw=1 cuts without re-encoding: no stamp.
	resp, err = cl.Get(srv.URL + q + "&from=10:15:02&to=10:15:06&raw=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if e := c.audit.Recent(1)[0]; resp.StatusCode != 200 || e.Detail != "clip, raw" {
		t.Errorf("raw clip: %d, audited %+v", resp.StatusCode, e)
	}
}

func meanDiff(a, b []byte) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return 255
	}
	var sum int
	for i := range a {
		d := int(a[i]) - int(b[i])
		sum += max(d, -d)
	}
	return float64(sum) / float64(len(a))
}

// TestAdminManagesUsers: with a users file, an admin adds a user, who can
// then log in; disabling them ends their session and refuses their
// password; a reset changes it; every change is in the file (a new
// console reads it back) and in the audit log.
func TestAdminManagesUsers(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Users: []User{{Name: "boss", PasswordHash: string(guardHash()), Role: RoleAdmin}},
		UsersFile: filepath.Join(dir, "users.yaml"), Audit: AuditConfig{Dir: filepath.Join(dir, "audit")}}
	cfg.Defaults("")
	if err := cfg.Validate("console"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	lm, _ := live.NewMetrics(reg)
	c, err := New(cfg, Deps{Streams: map[string]*live.Stream{}, Registerer: reg, Metrics: lm})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	admin := client()
	logIn(t, admin, srv.URL, "boss", "guard-password-1")
	resp, _ := admin.Get(srv.URL + "/admin")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := string(csrfField.FindSubmatch(page)[1])
	act := func(v url.Values) int {
		v.Set("csrf", csrf)
		resp, err := admin.PostForm(srv.URL+"/admin/users", v)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := act(url.Values{"action": {"add"}, "name": {"anna"}, "role": {"viewer"}, "password": {"anna-password-1"}}); code != http.StatusSeeOther {
		t.Fatalf("add: %d", code)
	}
	if code := act(url.Values{"action": {"add"}, "name": {"boss"}, "role": {"viewer"}, "password": {"another-password"}}); code != http.StatusBadRequest {
		t.Errorf("adding a name veil.yaml has: %d", code)
	}
	anna := client()
	if resp := logIn(t, anna, srv.URL, "anna", "anna-password-1"); resp.Header.Get("Location") != "/" {
		t.Fatalf("the new user cannot log in: %s", resp.Header.Get("Location"))
	}
	act(url.Values{"action": {"disable"}, "name": {"anna"}})
	if resp, _ := anna.Get(srv.URL + "/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a disabled user's session goes on: %d", resp.StatusCode)
	}
	if resp := logIn(t, client(), srv.URL, "anna", "anna-password-1"); resp.Header.Get("Location") == "/" {
		t.Error("a disabled user logged in")
	}
	act(url.Values{"action": {"enable"}, "name": {"anna"}})
	act(url.Values{"action": {"reset"}, "name": {"anna"}, "password": {"anna-new-password"}})
	c2, err := New(cfg, Deps{Streams: map[string]*live.Stream{}, Registerer: prometheus.NewRegistry(), Metrics: lm})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if u := check(c2.users.all(), "anna", "anna-new-password"); u == nil || u.Disabled {
		t.Errorf("the users file read back: %+v", c2.users.all())
	}
	n := 0
	for _, e := range c.audit.Recent(50) {
		if e.Kind == AuditUserChanged && e.User == "boss" {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%d user changes audited, want 4 (add, disable, enable, reset)", n)
	}
}

// TestConsoleSpeaksChinese: the console's pages follow the browser's
// language, and a choice made with ?lang= stays (a cookie) for the pages
// after.
func TestConsoleSpeaksChinese(t *testing.T) {
	_, srv, _ := newConsole(t)
	cl := client()
	logIn(t, cl, srv.URL, "guard", "guard-password-1")
	get := func(path, accept string) string {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept-Language", accept)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	if page := get("/camera/lobby", "zh-CN,zh;q=0.9"); !strings.Contains(page, `<html lang="zh-CN">`) || !strings.Contains(page, ">摄像头<") || !strings.Contains(page, "跳转到") {
		t.Error("a Chinese browser's camera page is not in Chinese")
	}
	if page := get("/", "en-US"); !strings.Contains(page, ">Cameras<") {
		t.Error("an English browser's grid is not in English")
	}
	get("/?lang=zh", "en-US") // the switch
	if page := get("/camera/lobby", "en-US"); !strings.Contains(page, "跳转到") {
		t.Error("the language chosen with ?lang=zh did not stay")
	}
}
