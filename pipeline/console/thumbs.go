package console

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/veilproject/veil/rtcconf"
)

// The day's strip of pictures: a picture from the first recording of each
// hour, small, so that a guard looking for "what happened at
// 10:15" sees the day before playing it. The pictures come from the
// recordings, so they are obscured as the recordings are.
const (
	thumbWidth   = 192
	thumbCached  = 512 // about 8 KB each
	thumbWorkers = 2   // ffmpeg runs at once; more requests wait
	thumbTimeout = 10 * time.Second
)

// thumbs makes and keeps the strip's pictures. A finished segment never
// changes, so a picture made once serves until it is pushed out.
type thumbs struct {
	sem chan struct{}

	mu    sync.Mutex
	m     map[string][]byte
	order []string // oldest first
}

func newThumbs() *thumbs {
	return &thumbs{sem: make(chan struct{}, thumbWorkers), m: map[string][]byte{}}
}

// get is path's first picture as a JPEG thumbWidth wide.
func (t *thumbs) get(ctx context.Context, path string) ([]byte, error) {
	t.mu.Lock()
	img, ok := t.m[path]
	t.mu.Unlock()
	if ok {
		return img, nil
	}
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-t.sem }()
	ctx, cancel := context.WithTimeout(ctx, thumbTimeout)
	defer cancel()
	// A second in, where there is one: a camera's first frames after a
	// start are obscured whole while the detector warms up (fail closed),
	// and say nothing of the hour.
	var err error
	for _, at := range []string{"1", "0"} {
		img, err = exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-ss", at, "-i", path, "-frames:v", "1", "-vf", "scale=192:-2",
			"-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "6", "-").Output()
		if err == nil && len(img) > 0 {
			break
		}
	}
	if err != nil || len(img) == 0 {
		return nil, errors.Join(errors.New("no picture"), err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[path]; !ok {
		t.m[path] = img
		t.order = append(t.order, path)
		if len(t.order) > thumbCached {
			delete(t.m, t.order[0])
			t.order = t.order[1:]
		}
	}
	return img, nil
}

// hourly is the first segment of each hour of segs (oldest first).
func hourly(segs []segment) []segment {
	var out []segment
	for _, s := range segs {
		if len(out) == 0 || s.Start.Local().Hour() != out[len(out)-1].Start.Local().Hour() {
			out = append(out, s)
		}
	}
	return out
}

// thumb serves a segment's picture for the strip. Seeing it is seeing
// the recording: audited as a preview of the camera's day, once per login
// and day within auditRepeat, before any picture is sent.
func (c *Console) thumb(w http.ResponseWriter, r *http.Request, x *session) {
	cam, ok := c.cams[r.PathValue("id")]
	name := r.PathValue("file")
	m := segmentName.FindStringSubmatch(name)
	if !ok || cam.Recordings == "" || m == nil {
		http.NotFound(w, r)
		return
	}
	start, err := time.Parse("20060102T150405.000Z", m[1])
	path := filepath.Join(cam.Recordings, name)
	if _, serr := os.Stat(path); err != nil || serr != nil {
		http.NotFound(w, r)
		return
	}
	day := start.Local().Format("2006-01-02")
	t, _ := c.sess.get(r)
	key := loginID(t) + " " + AuditPreview + " " + cam.ID + "/" + day
	if c.fetches.first(key, time.Now()) {
		if err := c.audit.Log(Event{Kind: AuditPreview, User: x.user, From: rtcconf.ClientIP(r), Camera: cam.ID, Detail: "the day's pictures, " + day}); err != nil {
			c.fetches.forget(key)
			c.log.Error("audit log unwritable: preview refused", "err", err)
			http.Error(w, "the audit log cannot be written; ask the administrator", http.StatusServiceUnavailable)
			return
		}
	}
	img, err := c.thumbs.get(r.Context(), path)
	if err != nil {
		c.log.Warn("a recording's picture", "camera", cam.ID, "file", name, "err", err)
		http.Error(w, "no picture", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "private, max-age=86400")
	w.Write(img)
}
