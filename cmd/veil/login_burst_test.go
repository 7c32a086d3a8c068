package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestLoginBurstKeepsTheVideoAnswered: a burst of wrong passwords for 64
// names from 64 addresses (127.0.0.x on loopback) while a camera runs. Each address is
// checked at most the limiter's 5 times, no more password checks run at
// once than the bound (the rest are refused at once, 503), and face
// search answers as large a share of frames during the burst as in the
// quiet seconds before it: the burst cannot take the detector's cores.
func TestLoginBurstKeepsTheVideoAnswered(t *testing.T) {
	dir := t.TempDir()
	h, _ := bcrypt.GenerateFromPassword([]byte("guard-password-1"), 12)
	p := startVeil(t, "run", "-config", writeConfig(t, dir, `cameras:
  - {id: lobby, file: `+vtest+`}
metrics: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0"}
console:
  users: [{name: guard, password_hash: "`+string(h)+`", role: viewer}]
  audit: {dir: `+filepath.Join(dir, "audit")+`}
  privacy: {operator: Sunrise Sales Office, contact: the front desk}
`))
	p.waitFor(t, "the detector ready", 3*time.Minute, func(l []string) bool {
		_, stderr := p.snapshot()
		return metricsURL(l) != "" && consoleAddr(l) != "" && strings.Contains(stderr, "crop networks compiled")
	})
	lines, _ := p.snapshot()
	murl, port := metricsURL(lines), strings.Split(consoleAddr(lines), ":")[1]
	answered := func() (float64, float64) {
		body := scrape(murl)
		get := func(result string) float64 {
			m := regexp.MustCompile(`veil_blur_frames_total\{camera="lobby",result="` + result + `"\} (\d+)`).FindStringSubmatch(body)
			if m == nil {
				return 0
			}
			v, _ := strconv.ParseFloat(m[1], 64)
			return v
		}
		return get("obscured"), get("fail_closed")
	}
	share := func(d time.Duration) float64 {
		o0, f0 := answered()
		time.Sleep(d)
		o1, f1 := answered()
		if o1+f1-o0-f0 == 0 {
			return 0
		}
		return (o1 - o0) / (o1 + f1 - o0 - f0)
	}
	time.Sleep(5 * time.Second)
	quiet := share(15 * time.Second)

	var checked, limited, busy, other atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for a := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := net.IPv4(127, 0, 0, byte(2+a))
			cl := burstClient(ip)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// A name per address: no name's lockout stops the burst,
				// so each address gets its 5 checks.
				switch code, _ := formLogin(cl, "http://127.0.0.1:"+port, fmt.Sprintf("user-%d", a), fmt.Sprintf("guess-%d", i)); code {
				case http.StatusSeeOther:
					checked.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				case http.StatusServiceUnavailable:
					busy.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	during := share(15 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("frames answered: %.3f quiet, %.3f during the burst; logins checked %d, rate limited %d, refused busy %d, other %d",
		quiet, during, checked.Load(), limited.Load(), busy.Load(), other.Load())
	if checked.Load() > 64*5 {
		t.Errorf("%d passwords checked from 64 addresses: more than 5 each", checked.Load())
	}
	if busy.Load() == 0 {
		t.Error("no login was refused as busy: password checks were not bounded")
	}
	if during < quiet-0.1 {
		t.Errorf("face search answered %.3f of frames during the burst, %.3f before it", during, quiet)
	}
	if exit, _ := p.stop(t, syscall.SIGTERM, time.Minute); exit != 0 {
		t.Errorf("exit %d", exit)
	}
}

// burstClient is a browser whose connections come from ip.
func burstClient(ip net.IP) *http.Client {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var loginCSRF = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// formLogin fetches the login form with cl and posts it; it returns the
// status and the page the post led to (cl follows redirects, or not).
func formLogin(cl *http.Client, base, name, pw string) (int, []byte) {
	resp, err := cl.Get(base + "/login")
	if err != nil {
		return 0, nil
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := loginCSRF.FindSubmatch(b)
	if m == nil {
		return 0, nil
	}
	resp, err = cl.PostForm(base+"/login", url.Values{"csrf": {string(m[1])}, "name": {name}, "password": {pw}})
	if err != nil {
		return 0, nil
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, b
}
