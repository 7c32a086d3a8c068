package console

import (
	"bytes"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDayPictures: the camera page's strip holds the first recording of
// each hour, each served as a small JPEG of the recording's first
// picture; the preview is audited once per login and day; a name that is
// not a segment of the camera is not served.
func TestDayPictures(t *testing.T) {
	c, srv, _ := newConsole(t)
	rec := c.cams["lobby"].Recordings
	day := time.Now().Truncate(24 * time.Hour).Add(-24 * time.Hour).Local() // yesterday, whatever the zone
	day = time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.Local)
	var names []string
	for _, at := range []time.Duration{10*time.Hour + 1*time.Minute, 10*time.Hour + 15*time.Minute, 11*time.Hour + 2*time.Minute} {
		name := "lobby-" + day.Add(at).UTC().Format("20060102T150405.000Z") + ".mp4"
		if out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=10:duration=2",
			"-c:v", "libx264", "-preset", "ultrafast", filepath.Join(rec, name)).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		names = append(names, name)
	}
	cl := client()
	logIn(t, cl, srv.URL, "guard", "guard-password-1")
	resp, err := cl.Get(srv.URL + "/camera/lobby?day=" + day.Format("2006-01-02"))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for i, want := range []bool{true, false, true} { // 10:01 and 11:02; not 10:15
		if got := strings.Contains(string(page), `src="/thumb/lobby/`+names[i]+`"`); got != want {
			t.Errorf("the strip has %s: %v, want %v", names[i], got, want)
		}
	}
	// The picture is the one a second in (a camera's first frames may be
	// obscured whole while its detector warms up), not the first.
	at := func(name, ss string) []byte {
		b, err := exec.Command("ffmpeg", "-v", "error", "-ss", ss, "-i", filepath.Join(rec, name), "-frames:v", "1", "-vf", "scale=192:-2",
			"-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "6", "-").Output()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := range 2 {
		resp, err := cl.Get(srv.URL + "/thumb/lobby/" + names[i*2])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		img, err := jpeg.Decode(bytes.NewReader(b))
		if resp.StatusCode != http.StatusOK || err != nil || img.Bounds().Dx() != thumbWidth || img.Bounds().Dy() != 108 {
			t.Fatalf("picture of %s: %d, %v, %v", names[i*2], resp.StatusCode, err, img)
		}
		if !bytes.Equal(b, at(names[i*2], "1")) || bytes.Equal(b, at(names[i*2], "0")) {
			t.Errorf("the picture of %s is not the one a second in", names[i*2])
		}
	}
	for _, bad := range []string{"secret.txt", "..%2Fsecret.txt", "lobby-20000101T000000.000Z.mp4"} {
		if resp, err := cl.Get(srv.URL + "/thumb/lobby/" + bad); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("/thumb/lobby/%s: %d, want 404", bad, resp.StatusCode)
			}
		}
	}
	if resp, _ := client().Get(srv.URL + "/thumb/lobby/" + names[0]); resp.StatusCode == http.StatusOK {
		t.Error("a picture served without a login")
	}
	c.audit.Close()
	b, _ := os.ReadFile(filepath.Join(c.cfg.Audit.Dir, "audit-"+time.Now().Format("2006-01-02")+".jsonl"))
	if n := strings.Count(string(b), `"kind":"recording_preview"`); n != 1 {
		t.Errorf("%d preview entries in the audit log, want 1 (two pictures of one day)\n%s", n, b)
	}
}
