package console

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/veilproject/veil/rtcconf"
)

// maxClip bounds an exported clip: a clip is cut while the guard waits.
const maxClip = time.Hour

// clip exports a camera's recording between two times of a day as one MP4,
// cut from the segments without re-encoding (ffmpeg's concat demuxer with
// in and out points; a cut lands on the keyframe at or before it). The
// export is audited as a download naming the times.
func (c *Console) clip(w http.ResponseWriter, r *http.Request, x *session) {
	cam, ok := c.cams[r.PathValue("id")]
	if !ok || cam.Recordings == "" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	day, err := time.ParseInLocation("2006-01-02", q.Get("day"), time.Local)
	from, err1 := clockTime(day, q.Get("from"))
	to, err2 := clockTime(day, q.Get("to"))
	if err != nil || err1 != nil || err2 != nil || !to.After(from) || to.Sub(from) > maxClip {
		http.Error(w, "give day (YYYY-MM-DD), from and to (HH:MM or HH:MM:SS), to after from, at most an hour apart", http.StatusBadRequest)
		return
	}
	list, err := c.clipList(cam.Recordings, day, from, to)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	name := fmt.Sprintf("%s-%s-%s-%s.mp4", cam.ID, day.Format("20060102"), from.Format("150405"), to.Format("150405"))
	if err := c.audit.Log(Event{Kind: AuditDownload, User: x.user, From: rtcconf.ClientIP(r), Camera: cam.ID, File: name, Start: from, End: to, Detail: "clip"}); err != nil {
		c.log.Error("audit log unwritable: clip refused", "err", err)
		http.Error(w, "the audit log cannot be written; ask the administrator", http.StatusServiceUnavailable)
		return
	}
	dir, err := os.MkdirTemp("", "veil-clip-")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.RemoveAll(dir)
	listFile, out := filepath.Join(dir, "list.txt"), filepath.Join(dir, name)
	if err := os.WriteFile(listFile, []byte(list), 0o600); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", listFile,
		"-c", "copy", "-movflags", "+faststart", out).CombinedOutput(); err != nil {
		c.log.Error("cutting a clip", "camera", cam.ID, "err", err, "ffmpeg", strings.TrimSpace(string(b)))
		http.Error(w, "the clip could not be cut", http.StatusInternalServerError)
		return
	}
	f, err := os.Open(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	info, _ := f.Stat()
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Cache-Control", "private, no-store")
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute + time.Duration(info.Size()/minDownloadRate)*time.Second))
	http.ServeContent(w, r, name, info.ModTime(), f)
}

// clipList is the concat demuxer's list of the segments of day that hold
// [from, to), with in and out points; each segment is taken to last until
// the next begins (the last, a segment's usual length).
func (c *Console) clipList(dir string, day, from, to time.Time) (string, error) {
	segs := segments(dir, day)
	var b strings.Builder
	n := 0
	for i, s := range segs {
		end := s.Start.Add(time.Minute)
		if i+1 < len(segs) && segs[i+1].Start.Sub(s.Start) < 10*time.Minute {
			end = segs[i+1].Start
		}
		if !end.After(from) || !s.Start.Before(to) {
			continue
		}
		fmt.Fprintf(&b, "file '%s'\n", strings.ReplaceAll(filepath.Join(dir, s.Name), "'", `'\''`))
		if from.After(s.Start) {
			fmt.Fprintf(&b, "inpoint %.3f\n", from.Sub(s.Start).Seconds())
		}
		if to.Before(end) {
			fmt.Fprintf(&b, "outpoint %.3f\n", to.Sub(s.Start).Seconds())
		}
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("no recording between %s and %s on %s", from.Format("15:04:05"), to.Format("15:04:05"), day.Format("2006-01-02"))
	}
	return b.String(), nil
}

// clockTime is hh:mm[:ss] on day.
func clockTime(day time.Time, s string) (time.Time, error) {
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return time.Date(day.Year(), day.Month(), day.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.Local), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time of day", s)
}
