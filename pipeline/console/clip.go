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

// clipWorkers bounds the clips cut at once: each is an ffmpeg encode of
// up to an hour of video, and the machine's cores are the cameras'.
const clipWorkers = 2

// clip exports a camera's recording between two times of a day as one MP4,
// with the camera's name and the time of day drawn on every frame (or, with
// raw=1, cut without re-encoding). The export is audited as a download
// naming the times.
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
	pieces, err := clipPieces(cam.Recordings, day, from, to)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	select {
	case c.clips <- struct{}{}:
		defer func() { <-c.clips }()
	default:
		w.Header().Set("Retry-After", "30")
		http.Error(w, "other clips are being cut now; try again in a minute", http.StatusServiceUnavailable)
		return
	}
	// Stamped (re-encoded) by default, as evidence is quoted from; raw=1
	// cuts without re-encoding, bit for bit as recorded.
	raw := q.Get("raw") == "1"
	name := fmt.Sprintf("%s-%s-%s-%s.mp4", cam.ID, day.Format("20060102"), from.Format("150405"), to.Format("150405"))
	detail := "clip, stamped"
	if raw {
		detail = "clip, raw"
	}
	if err := c.audit.Log(Event{Kind: AuditDownload, User: x.user, From: rtcconf.ClientIP(r), Camera: cam.ID, File: name, Start: from, End: to, Detail: detail}); err != nil {
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
	out := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	if raw {
		err = cut(ctx, dir, pieces, out)
	} else {
		err = stamp(ctx, dir, cam.ID, pieces, out)
	}
	if err != nil {
		c.log.Error("cutting a clip", "camera", cam.ID, "err", err)
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

// piece is the part of one segment that a clip takes.
type piece struct {
	path    string
	in, out time.Duration // from the segment's start; out 0: to its end
	start   time.Time     // the time of day at in
}

// clipPieces are the parts of the segments of day that hold [from, to);
// each segment is taken to last until the next begins (the last, a
// segment's usual length).
func clipPieces(dir string, day, from, to time.Time) ([]piece, error) {
	segs := segments(dir, day)
	var out []piece
	for i, s := range segs {
		end := s.Start.Add(time.Minute)
		if i+1 < len(segs) && segs[i+1].Start.Sub(s.Start) < 10*time.Minute {
			end = segs[i+1].Start
		}
		if !end.After(from) || !s.Start.Before(to) {
			continue
		}
		p := piece{path: filepath.Join(dir, s.Name), start: s.Start}
		if from.After(s.Start) {
			p.in, p.start = from.Sub(s.Start), from
		}
		if to.Before(end) {
			p.out = to.Sub(s.Start)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no recording between %s and %s on %s", from.Format("15:04:05"), to.Format("15:04:05"), day.Format("2006-01-02"))
	}
	return out, nil
}

// concatList is the concat demuxer's list of pieces, with in and out
// points.
func concatList(pieces []piece) string {
	var b strings.Builder
	for _, p := range pieces {
		fmt.Fprintf(&b, "file '%s'\n", strings.ReplaceAll(p.path, "'", `'\''`))
		if p.in > 0 {
			fmt.Fprintf(&b, "inpoint %.3f\n", p.in.Seconds())
		}
		if p.out > 0 {
			fmt.Fprintf(&b, "outpoint %.3f\n", p.out.Seconds())
		}
	}
	return b.String()
}

// cut joins pieces without re-encoding (ffmpeg's concat demuxer with in
// and out points; a cut lands on the keyframe at or before it).
func cut(ctx context.Context, dir string, pieces []piece, out string) error {
	listFile := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(listFile, []byte(concatList(pieces)), 0o600); err != nil {
		return err
	}
	if b, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", listFile,
		"-c", "copy", "-movflags", "+faststart", out).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}

// stamp re-encodes each piece with the camera's name and the time of day
// drawn on it (from the piece's own start, so a gap between segments, a
// camera that was down, does not shift the times after it), frame-exact
// at both ends, and joins the pieces.
func stamp(ctx context.Context, dir, camera string, pieces []piece, out string) error {
	var list strings.Builder
	for i, p := range pieces {
		// drawtext's own escaping: the colons of the clock inside the
		// pts expansion are escaped twice.
		text := fmt.Sprintf(`%s  %%{pts\:localtime\:%d.%03d\:%%Y-%%m-%%d %%H\\\:%%M\\\:%%S}`, camera, p.start.Unix(), p.start.Nanosecond()/1e6)
		vf := "drawtext=font='DejaVu Sans Mono':fontsize=h/24:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=6:x=12:y=12:text='" + text + "'"
		args := []string{"-v", "error", "-ss", fmt.Sprintf("%.3f", p.in.Seconds()), "-i", p.path}
		if p.out > 0 {
			args = append(args, "-t", fmt.Sprintf("%.3f", (p.out-p.in).Seconds()))
		}
		name := filepath.Join(dir, fmt.Sprintf("piece-%03d.mp4", i))
		args = append(args, "-an", "-vf", vf, "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", name)
		if b, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("stamping %s: %v: %s", filepath.Base(p.path), err, strings.TrimSpace(string(b)))
		}
		fmt.Fprintf(&list, "file '%s'\n", name)
	}
	listFile := filepath.Join(dir, "stamped.txt")
	if err := os.WriteFile(listFile, []byte(list.String()), 0o600); err != nil {
		return err
	}
	if b, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", listFile,
		"-c", "copy", "-movflags", "+faststart", out).CombinedOutput(); err != nil {
		return fmt.Errorf("joining: %v: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
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
