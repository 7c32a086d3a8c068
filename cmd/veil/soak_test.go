package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/veilproject/veil/pipeline/counts/kafkatest"
)

// TestSoak runs veil for $VEIL_SOAK (make soak: 30m) as a site runs it:
// four cameras counted and recorded with short retention, the console
// with a login every few seconds (right and wrong passwords) and
// recordings played, two live viewers that reconnect every minute, and
// the counts through a real Kafka broker to the in-process exporter.
// Every minute it records veil's RSS, goroutines, open files and the disk
// its directories use (soak.csv in $VEIL_SOAK_OUT, or the log), and at
// the end requires that none of them grew without bound: the last third
// of the run may not exceed the middle third by more than a margin.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("VEIL_SOAK"))
	if err != nil || d < 3*time.Minute {
		t.Skip("set VEIL_SOAK to a duration of at least 3m (make soak)")
	}
	dir := t.TempDir()
	k, err := kafkatest.Start(1)
	if err != nil {
		t.Fatalf("starting Kafka: %v", err)
	}
	defer k.Stop()
	h, _ := bcrypt.GenerateFromPassword([]byte("guard-password-1"), 12)
	var cams strings.Builder
	for i := range 4 {
		fmt.Fprintf(&cams, `  - id: cam%d
    file: %s
    lines: [{id: road, from: [0.45, 0.68], to: [0.45, 0.30]}]
    zones: [{id: all, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}]
`, i, vtest)
	}
	p := startVeil(t, "run", "-config", writeConfig(t, dir, "cameras:\n"+cams.String()+`metrics: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0"}
recordings: {dir: `+filepath.Join(dir, "rec")+`, segment: 10s, keep: 3m}
kafka: {brokers: ["`+k.Brokers[0]+`"]}
exporter: {enabled: true}
spool_dir: `+filepath.Join(dir, "spool")+`
console:
  users: [{name: guard, password_hash: "`+string(h)+`", role: viewer}]
  audit: {dir: `+filepath.Join(dir, "audit")+`}
  privacy: {operator: Sunrise Sales Office, contact: the front desk}
`))
	p.waitFor(t, "addresses", 2*time.Minute, func(l []string) bool { return metricsURL(l) != "" && consoleAddr(l) != "" })
	lines, _ := p.snapshot()
	murl, base := metricsURL(lines), "http://"+consoleAddr(lines)

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); soakVisitors(base, stop) }()

	out := os.Getenv("VEIL_SOAK_OUT")
	if out == "" {
		out = dir
	}
	f, err := os.Create(filepath.Join(out, "soak.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write([]string{"minute", "rss_mib", "goroutines", "open_fds", "disk_mib"})
	var rows [][4]float64
	for m := 1; time.Duration(m)*time.Minute <= d; m++ {
		time.Sleep(time.Minute)
		body := scrape(murl)
		row := [4]float64{rssMiB(p.cmd.Process.Pid), metricValue(body, "go_goroutines"), metricValue(body, "process_open_fds"), duMiB(dir, "kafka")}
		rows = append(rows, row)
		w.Write([]string{strconv.Itoa(m), fmt.Sprintf("%.1f", row[0]), fmt.Sprint(row[1]), fmt.Sprint(row[2]), fmt.Sprintf("%.1f", row[3])})
		w.Flush()
		t.Logf("minute %d: RSS %.1f MiB, %v goroutines, %v open files, %.1f MiB on disk (recordings %.1f, audit %.1f, spool %.1f)", m, row[0], row[1], row[2], row[3],
			duMiB(filepath.Join(dir, "rec"), ""), duMiB(filepath.Join(dir, "audit"), ""), duMiB(filepath.Join(dir, "spool"), ""))
		if !strings.Contains(body, `veil_camera_up{camera="cam0"} 1`) {
			t.Errorf("minute %d: cam0 is down", m)
		}
	}
	close(stop)
	<-done
	if exit, _ := p.stop(t, syscall.SIGTERM, time.Minute); exit != 0 {
		_, stderr := p.snapshot()
		t.Errorf("after SIGTERM: exit %d\n%s", exit, tail(stderr, 30))
	}
	// The first third warms up (caches, the detector's networks, the
	// retention window filling); the last third may not outgrow the
	// middle one.
	third := len(rows) / 3
	for i, what := range []struct {
		name  string
		ratio float64
		slack float64
	}{{"RSS (MiB)", 1.2, 32}, {"goroutines", 1.2, 20}, {"open files", 1.2, 16}, {"disk (MiB)", 1.3, 16}} {
		mid, last := median(rows[third:2*third], i), median(rows[2*third:], i)
		if last > mid*what.ratio+what.slack {
			t.Errorf("%s grew: median %.1f in the middle third, %.1f in the last", what.name, mid, last)
		}
	}
}

// soakVisitors logs in and out, fails logins, plays recordings and keeps
// two live viewers, until stop is closed.
func soakVisitors(base string, stop <-chan struct{}) {
	var viewers []*webrtc.PeerConnection
	defer func() {
		for _, pc := range viewers {
			pc.Close()
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(3 * time.Second):
		}
		pw := "guard-password-1"
		if i%4 == 3 {
			pw = "a wrong password"
		}
		jar, _ := cookiejar.New(nil)
		cl := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		csrf := soakLogin(cl, base, pw)
		if csrf == "" {
			continue
		}
		if resp, err := cl.Get(base + "/camera/cam" + strconv.Itoa(i%4)); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := regexp.MustCompile(`/recordings/cam\d/[^"?]+\.mp4`).Find(b); m != nil {
				if resp, err := cl.Get(base + string(m)); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
		if i%20 == 0 { // every minute: the viewers reconnect
			for _, pc := range viewers {
				pc.Close()
			}
			viewers = viewers[:0]
			for k := range 2 {
				if pc := soakViewer(cl, base, "cam"+strconv.Itoa(k), csrf); pc != nil {
					viewers = append(viewers, pc)
				}
			}
		}
		if i%2 == 0 {
			cl.PostForm(base+"/logout", url.Values{"csrf": {csrf}})
		}
	}
}

// soakLogin logs cl in and returns the session's CSRF token ("" if the
// login failed).
func soakLogin(cl *http.Client, base, pw string) string {
	_, b := formLogin(cl, base, "guard", pw)
	if m := loginCSRF.FindSubmatch(b); m != nil && !strings.Contains(string(b), `action="/login"`) {
		return string(m[1])
	}
	return ""
}

// soakViewer opens a live view of camera over WHEP with cl's session.
func soakViewer(cl *http.Client, base, camera, csrf string) *webrtc.PeerConnection {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil
	}
	pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
		}
	})
	offer, _ := pc.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	pc.SetLocalDescription(offer)
	<-gathered
	req, _ := http.NewRequest(http.MethodPost, base+"/whep/"+camera, strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("X-CSRF-Token", csrf)
	resp, err := cl.Do(req)
	if err != nil {
		pc.Close()
		return nil
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}) != nil {
		pc.Close()
		return nil
	}
	return pc
}

func rssMiB(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024
}

// metricValue is the value of an unlabelled series in a scrape.
func metricValue(body, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + name + ` ([0-9.e+]+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// duMiB is the size of the files under dir, skip's subtree left out.
func duMiB(dir, skip string) float64 {
	var n int64
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if info.IsDir() && info.Name() == skip {
			return filepath.SkipDir
		}
		if info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return float64(n) / (1 << 20)
}

func median(rows [][4]float64, col int) float64 {
	var v []float64
	for _, r := range rows {
		v = append(v, r[col])
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}
