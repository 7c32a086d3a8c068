package console

import (
	"context"
	"embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/output/live"
	"github.com/veilproject/veil/pipeline/output/record/recordconf"
	"github.com/veilproject/veil/rtcconf"
)

//go:embed assets
var assets embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"hm":  func(t time.Time) string { return t.Local().Format("15:04:05") },
	"div": func(n int64) float64 { return float64(n) / 1e6 },
	"add": func(a, b int) int { return a + b },
	"tr":  tr,
	"mul": func(a, b int) int { return a * b },
	// index_where is a camera's entry in the grid's placement, if any.
	"index_where": func(where any, camera string) Served {
		m, _ := where.(map[string]Served)
		return m[camera]
	},
	// pair hands a sub-template the page and one item of it.
	"pair": func(page map[string]any, chart chart) map[string]any {
		return map[string]any{"Page": page, "Chart": chart}
	},
}).ParseFS(assets, "assets/*.html"))

// Camera is a camera the console shows.
type Camera struct {
	ID string
	// ViewToken lets a machine (a video wall) watch over WHEP without a
	// login; empty: none.
	ViewToken string
	// Recordings is the directory of its segments; empty: not recorded.
	Recordings string
}

// Served is where one of the site's cameras is served (placement).
type Served struct {
	Camera, Box string
	// Console is the serving box's console address; empty if unknown.
	Console string
	// Here: this box serves it.
	Here bool
}

// Deps are what the console serves from.
type Deps struct {
	Cameras []Camera
	// Editor changes a camera's lines and zones for admins; nil: no editor.
	Editor CountingEditor
	// Where, with placement, says which of the site's boxes serves each
	// camera; nil: every camera is served here.
	Where   func(context.Context) ([]Served, error)
	Streams map[string]*live.Stream
	// Keep is how long recordings are kept (the privacy notice says it).
	Keep time.Duration
	// Counting and CountsExported say whether cameras count people and
	// whether the counts leave the box (Kafka): the notice says so.
	Counting, CountsExported bool
	// TLS: cookies are marked Secure.
	TLS bool
	// ConfigDigest identifies the configuration (audited at start).
	ConfigDigest string
	// Tokens throttles wrong view tokens (shared with WHIP); nil: none.
	Tokens *rtcconf.Gate
	// ICEIPs and IncludeLoopback are the WHEP server's ICE settings.
	ICEIPs          []string
	IncludeLoopback bool
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	Metrics         *live.Metrics
}

// Console serves the console's pages, recordings and WHEP.
type Console struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	audit  *Audit
	sess   *sessions
	users  *userList
	lim    *limiter
	checks checks
	dev    *devices
	whep   *live.WHEP
	cams   map[string]Camera

	fetches recent
	thumbs  *thumbs
	clips   chan struct{} // clips being cut (clipWorkers at most)

	mu      sync.Mutex
	counts  map[string]*dayCounts            // today's, by camera
	days    map[string]map[string]*dayCounts // finished days, by camera and day
	savedAt time.Time
}

// New opens the audit log and builds the handlers.
func New(cfg Config, deps Deps) (*Console, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := NewAudit(cfg.Audit, deps.Logger, deps.Registerer)
	if err != nil {
		return nil, err
	}
	dev, err := newDevices(cfg.Audit.Dir)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, deps: deps, log: deps.Logger.With("component", "console"), audit: a,
		sess: &sessions{ttl: cfg.SessionTTL, m: map[string]*session{}}, lim: newLimiter(), checks: newChecks(), dev: dev,
		cams: map[string]Camera{}, counts: map[string]*dayCounts{}, thumbs: newThumbs(), clips: make(chan struct{}, clipWorkers)}
	for _, cam := range deps.Cameras {
		c.cams[cam.ID] = cam
	}
	managed, err := readUsersFile(cfg.UsersFile, cfg.Users)
	if cfg.UsersFile == "" {
		managed, err = nil, nil
	}
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("console.users_file: %w", err)
	}
	c.users = &userList{fixed: cfg.Users, managed: managed, file: cfg.UsersFile}
	c.loadCounts()
	c.savedAt = time.Now()
	c.whep = &live.WHEP{Streams: deps.Streams, Authorize: c.authorizeViewer,
		MaxPerCamera: cfg.MaxViewersPerCamera, MaxTotal: cfg.MaxViewers, MaxPerViewer: cfg.MaxViewersPerUser,
		IPs: deps.ICEIPs, IncludeLoopback: deps.IncludeLoopback, Logger: deps.Logger, Metrics: deps.Metrics, Tokens: deps.Tokens,
		// The start is written before any picture is sent, so a view the
		// process does not live to end is on record too.
		Started: func(e live.SessionEvent) error {
			return c.audit.Log(Event{Kind: AuditLiveViewStart, User: e.Who, From: e.From, Camera: e.Camera, Start: e.Start})
		},
		Ended: func(e live.SessionEvent) {
			c.audit.Log(Event{Kind: AuditLiveView, User: e.Who, From: e.From, Camera: e.Camera, Start: e.Start, End: e.End})
		}}
	detail := "sha256:" + deps.ConfigDigest
	for _, e := range a.Recent(200) {
		if e.Kind == AuditConfigLoaded {
			if e.Detail != detail {
				detail += " (changed since " + e.Time.Format(time.RFC3339) + ")"
			}
			break
		}
	}
	if err := a.Log(Event{Kind: AuditConfigLoaded, Detail: detail}); err != nil {
		return nil, err
	}
	return c, nil
}

// TokenRefused audits a wrong bearer token (a Gate's report): each one,
// and the block that follows enough of them.
func (c *Console) TokenRefused(kind, camera, from string, blocked bool) {
	detail := kind
	if blocked {
		detail += ": address blocked for wrong tokens"
	}
	c.audit.Log(Event{Kind: AuditTokenRefused, From: from, Camera: camera, Detail: detail})
}

// PublisherReplaced audits a WHIP publisher taking a camera over from the
// one before it.
func (c *Console) PublisherReplaced(camera, from string) {
	c.audit.Log(Event{Kind: AuditPublisher, From: from, Camera: camera})
}

// Close ends live sessions, keeps today's counts and closes the audit log.
func (c *Console) Close() error {
	c.whep.Close()
	c.mu.Lock()
	c.saveCountsLocked()
	c.mu.Unlock()
	return c.audit.Close()
}

// authorizeViewer admits a WHEP request: a logged-in session with its CSRF
// header, or the camera's view token.
func (c *Console) authorizeViewer(r *http.Request, camera string) (live.Viewer, bool) {
	if t, x := c.sess.get(r); x != nil && csrfOK(r, x) {
		return live.Viewer{Who: x.user, From: rtcconf.ClientIP(r), Login: loginID(t), Until: x.expires}, true
	}
	if cam, ok := c.cams[camera]; ok && cam.ViewToken != "" {
		if rtcconf.Bearer(r, cam.ViewToken) {
			return live.Viewer{Who: "token:" + camera, From: rtcconf.ClientIP(r)}, true
		}
	}
	return live.Viewer{}, false
}

// Handler serves the console.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /privacy", c.privacy)
	mux.HandleFunc("GET /console.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		b, _ := assets.ReadFile("assets/console.js")
		w.Write(b)
	})
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.user(c.logout))
	mux.HandleFunc("GET /{$}", c.user(c.grid))
	mux.HandleFunc("GET /camera/{id}", c.user(c.camera))
	mux.HandleFunc("GET /recordings/{id}/{file}", c.user(c.recording))
	mux.HandleFunc("GET /thumb/{id}/{file}", c.user(c.thumb))
	mux.HandleFunc("GET /admin", c.admin(c.adminPage))
	mux.HandleFunc("GET /counts/{file}", c.user(c.countsCSV))
	mux.HandleFunc("GET /clip/{id}", c.user(c.clip))
	mux.HandleFunc("GET /admin/audit.csv", c.admin(c.auditCSV))
	mux.HandleFunc("POST /admin/users", c.admin(c.userAction))
	mux.HandleFunc("GET /admin/counting/{id}", c.admin(c.countingGet))
	mux.HandleFunc("POST /admin/counting/{id}", c.admin(c.countingSet))
	mux.HandleFunc("GET /editor.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		b, _ := assets.ReadFile("assets/editor.js")
		w.Write(b)
	})
	mux.Handle("/whep/", c.whep)
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Frame-Options", "DENY")
		if l := r.URL.Query().Get("lang"); l == "zh" || l == "en" {
			http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
		}
		if r.TLS != nil {
			// Once a browser has seen the console over HTTPS it never
			// tries plain HTTP, where a cookie could be read off the LAN.
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

type handler func(w http.ResponseWriter, r *http.Request, x *session)

// user admits a logged-in session (and, for anything but GET, its CSRF
// token); otherwise a page redirects to the login and anything else is 401.
func (c *Console) user(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, x := c.sess.get(r)
		if x == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && !csrfOK(r, x) {
			http.Error(w, "missing or wrong CSRF token", http.StatusForbidden)
			return
		}
		h(w, r, x)
	}
}

// admin is user for admins only; a viewer gets 403, audited.
func (c *Console) admin(h handler) http.HandlerFunc {
	return c.user(func(w http.ResponseWriter, r *http.Request, x *session) {
		if x.role != RoleAdmin {
			c.audit.Log(Event{Kind: AuditDenied, User: x.user, From: rtcconf.ClientIP(r), Detail: r.URL.Path})
			http.Error(w, "admins only", http.StatusForbidden)
			return
		}
		h(w, r, x)
	})
}

func (c *Console) render(w http.ResponseWriter, name string, data map[string]any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		c.log.Error("rendering", "page", name, "err", err)
	}
}

func (c *Console) privacy(w http.ResponseWriter, r *http.Request) {
	keep := "not recorded"
	if c.deps.Keep > 0 {
		keep = humanDuration(c.deps.Keep)
	}
	tokens, recorded := false, false
	for _, cam := range c.deps.Cameras {
		tokens = tokens || cam.ViewToken != ""
		recorded = recorded || cam.Recordings != ""
	}
	// Every claim follows from the configuration: the test of each
	// changes the configuration and reads the notice again.
	lang := language(r)
	countsKeep, countsKeepZH := "", ""
	if d := c.cfg.Privacy.CountsKeep; d > 0 {
		countsKeep, countsKeepZH = humanDuration(d), humanDurationZH(d)
	}
	w.Header().Set("Content-Language", lang)
	w.Header().Set("Vary", "Accept-Language")
	c.render(w, "privacy.html", map[string]any{"P": c.cfg.Privacy, "Keep": keep, "KeepZH": humanDurationZH(c.deps.Keep), "Print": r.URL.Query().Has("print"), "Cameras": len(c.deps.Cameras),
		"Recorded": recorded && c.deps.Keep > 0, "Downloads": len(c.users.all()) > 0, "ViewTokens": tokens,
		"Counting": c.deps.Counting, "CountsExported": c.deps.CountsExported, "CountsKeep": countsKeep, "CountsKeepZH": countsKeepZH,
		"Lang": lang, "ZH": lang == "zh-CN"})
}

// langCookie keeps a language chosen with ?lang= for the pages after.
const langCookie = "veil_lang"

// language is the page's language: ?lang=zh or ?lang=en if given (or
// chosen before, in langCookie), else the first of Simplified Chinese and
// English the browser's Accept-Language prefers, else English.
func language(r *http.Request) string {
	choice := r.URL.Query().Get("lang")
	if choice == "" {
		if ck, err := r.Cookie(langCookie); err == nil {
			choice = ck.Value
		}
	}
	switch choice {
	case "zh", "zh-CN":
		return "zh-CN"
	case "en":
		return "en"
	}
	best, bestQ := "en", -1.0
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		tag = strings.ToLower(tag)
		lang := ""
		switch {
		case tag == "zh" || strings.HasPrefix(tag, "zh-"):
			lang = "zh-CN"
		case tag == "en" || strings.HasPrefix(tag, "en-"):
			lang = "en"
		}
		if lang != "" && q > bestQ {
			best, bestQ = lang, q
		}
	}
	return best
}

// humanDurationZH says d in Chinese, as humanDuration does in English.
func humanDurationZH(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf(" %d 天", int(d.Hours()/24))
	}
	return fmt.Sprintf(" %d 小时", int(d.Hours()))
}

func humanDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	if h := int(d.Hours()); h != 1 {
		return fmt.Sprintf("%d hours", h)
	}
	return "1 hour"
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, x *session) {
	t, _ := c.sess.get(r)
	c.sess.delete(t)
	c.whep.EndLogin(loginID(t)) // a view in another tab ends with the login
	c.audit.Log(Event{Kind: AuditLogout, User: x.user, From: rtcconf.ClientIP(r)})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.deps.TLS, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (c *Console) base(x *session, r *http.Request) map[string]any {
	ids := make([]string, 0, len(c.deps.Cameras))
	for _, cam := range c.deps.Cameras {
		ids = append(ids, cam.ID)
	}
	return map[string]any{"User": x.user, "Admin": x.role == RoleAdmin, "CSRF": x.csrf, "Cameras": ids, "Lang": language(r)}
}

func (c *Console) grid(w http.ResponseWriter, r *http.Request, x *session) {
	page := c.base(x, r)
	if c.deps.Where != nil {
		page["Where"], page["WhereErr"] = c.where(r.Context())
	}
	c.render(w, "grid.html", page)
}

// where is each camera's serving box, by camera; the error is shown.
func (c *Console) where(ctx context.Context) (map[string]Served, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ws, err := c.deps.Where(ctx)
	if err != nil {
		c.log.Warn("asking where the site's cameras are served", "err", err)
		return nil, err
	}
	out := map[string]Served{}
	for _, w := range ws {
		out[w.Camera] = w
	}
	return out, nil
}

// segment is a finished recording.
type segment struct {
	Name  string
	Start time.Time
	Size  int64
}

var segmentName = recordconf.SegmentName

// segments lists camera's recordings of day (local time), oldest first.
func segments(dir string, day time.Time) []segment {
	ents, _ := os.ReadDir(dir)
	var out []segment
	for _, e := range ents {
		m := segmentName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		t, err := time.Parse("20060102T150405.000Z", m[1])
		if err != nil {
			continue
		}
		if y, mo, d := t.Local().Date(); y != day.Year() || mo != day.Month() || d != day.Day() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, segment{Name: e.Name(), Start: t, Size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

func (c *Console) camera(w http.ResponseWriter, r *http.Request, x *session) {
	cam, ok := c.cams[r.PathValue("id")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	day := time.Now()
	if d, err := time.ParseInLocation("2006-01-02", r.URL.Query().Get("day"), time.Local); err == nil {
		day = d
	}
	data := c.base(x, r)
	data["Camera"] = cam.ID
	data["Day"] = day.Format("2006-01-02")
	data["DayStart"] = time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.Local).UnixMilli()
	data["Prev"] = day.AddDate(0, 0, -1).Format("2006-01-02")
	data["Next"] = day.AddDate(0, 0, 1).Format("2006-01-02")
	data["Recorded"] = cam.Recordings != ""
	if cam.Recordings != "" {
		data["Segments"] = segments(cam.Recordings, day)
		data["Thumbs"] = hourly(data["Segments"].([]segment))
	}
	data["Charts"] = c.charts(cam.ID)
	data["HourCounts"] = c.hourCounts(cam.ID, day.Format("2006-01-02"))
	// Counts day by day: the last 7 days, or a chosen range.
	rto, err1 := time.ParseInLocation("2006-01-02", r.URL.Query().Get("cto"), time.Local)
	rfrom, err2 := time.ParseInLocation("2006-01-02", r.URL.Query().Get("cfrom"), time.Local)
	if err1 != nil || err2 != nil || rfrom.After(rto) {
		now := time.Now()
		rto = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.Local)
		rfrom = rto.AddDate(0, 0, -6)
	}
	days := daysIn(rfrom, rto)
	data["RangeFrom"], data["RangeTo"] = days[0], days[len(days)-1]
	data["RangeCharts"] = c.rangeCharts(cam.ID, days)
	data["Editor"] = c.deps.Editor != nil && x.role == RoleAdmin
	c.render(w, "camera.html", data)
}

// minDownloadRate is the slowest pace, in bytes a second, at which a
// recording's download is let run.
const minDownloadRate = 64 << 10

// recording serves a finished segment with range requests (seeking),
// audited: a play when the player fetches the start, a download when asked
// for as a file.
func (c *Console) recording(w http.ResponseWriter, r *http.Request, x *session) {
	cam, ok := c.cams[r.PathValue("id")]
	name := r.PathValue("file")
	if !ok || cam.Recordings == "" || !segmentName.MatchString(name) {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(cam.Recordings, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		http.NotFound(w, r)
		return
	}
	// Every response that may return bytes is audited, whatever its
	// range: the first of a login's requests for a file within
	// auditRepeat writes the line, the player's seeks after it do not.
	download := r.URL.Query().Has("download")
	kind := AuditPlay
	if download {
		kind = AuditDownload
	}
	t, _ := c.sess.get(r)
	fetch := loginID(t) + " " + kind + " " + cam.ID + "/" + name
	if c.fetches.first(fetch, time.Now()) {
		// Which part of the day was watched: the segment's span, from its
		// name (its first frame) to its last write (its last frame).
		ev := Event{Kind: kind, User: x.user, From: rtcconf.ClientIP(r), Camera: cam.ID, File: name}
		if m := segmentName.FindStringSubmatch(name); m != nil {
			if start, err := time.Parse("20060102T150405.000Z", m[1]); err == nil && info.ModTime().After(start) {
				ev.Start, ev.End = start, info.ModTime()
			}
		}
		if err := c.audit.Log(ev); err != nil {
			c.fetches.forget(fetch)
			c.log.Error("audit log unwritable: recording refused", "err", err)
			http.Error(w, "the audit log cannot be written; ask the administrator", http.StatusServiceUnavailable)
			return
		}
	}
	if download {
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	}
	// The server's write timeout suits pages; a segment gets the time it
	// needs at a slow link's pace, and no more.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute + time.Duration(info.Size()/minDownloadRate)*time.Second))
	w.Header().Set("Content-Type", "video/mp4")
	w.Header().Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, name, info.ModTime(), f)
}

func (c *Console) adminPage(w http.ResponseWriter, r *http.Request, x *session) {
	data := c.base(x, r)
	data["Users"] = c.users.fixed
	data["Managed"] = c.users.all()[len(c.users.fixed):]
	data["UsersFile"] = c.cfg.UsersFile != ""
	f := auditFilterOf(r)
	data["Audit"] = f.apply(c.audit.Recent(auditScan), 200)
	data["Filter"] = f
	data["Kinds"] = auditKinds
	c.render(w, "admin.html", data)
}

// auditScan is how many of the latest entries the admin page and the
// export search: the log's end, read backwards, never the whole log.
const auditScan = 20000

// auditFilter picks audit entries by kind, user and camera (empty: any).
type auditFilter struct{ Kind, User, Camera string }

func auditFilterOf(r *http.Request) auditFilter {
	q := r.URL.Query()
	return auditFilter{Kind: q.Get("kind"), User: clip(q.Get("user"), maxNameField), Camera: clip(q.Get("camera"), maxNameField)}
}

func (f auditFilter) apply(evs []Event, n int) []Event {
	var out []Event
	for _, e := range evs {
		if (f.Kind == "" || e.Kind == f.Kind) && (f.User == "" || e.User == f.User) && (f.Camera == "" || e.Camera == f.Camera) {
			out = append(out, e)
			if len(out) == n {
				break
			}
		}
	}
	return out
}

// auditCSV exports the audit entries the admin page's filter picks (up to
// auditScan of the latest), itself audited.
func (c *Console) auditCSV(w http.ResponseWriter, r *http.Request, x *session) {
	f := auditFilterOf(r)
	if err := c.audit.Log(Event{Kind: AuditExport, User: x.user, From: rtcconf.ClientIP(r), Camera: f.Camera, Detail: fmt.Sprintf("kind=%q user=%q", f.Kind, f.User)}); err != nil {
		http.Error(w, "the audit log cannot be written; ask the administrator", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="veil-audit.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"time", "kind", "user", "from", "camera", "file", "start", "end", "detail"})
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, e := range f.apply(c.audit.Recent(auditScan), auditScan) {
		cw.Write([]string{stamp(e.Time), e.Kind, e.User, e.From, e.Camera, e.File, stamp(e.Start), stamp(e.End), e.Detail})
	}
	cw.Flush()
}

// Observe takes a count event (every camera's, as they are made) for
// today's charts.
func (c *Console) Observe(e footfall.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A window belongs to the hour it ends in (one ending on the hour, to
	// the hour before).
	at := e.WindowEnd.Add(-time.Nanosecond).Local()
	day, h := at.Format("2006-01-02"), at.Hour()
	d := c.counts[e.Camera]
	if d != nil && d.Day > day {
		return // yesterday's, late
	}
	if d == nil || d.Day != day {
		if d != nil {
			c.keepDayLocked(e.Camera, d)
		}
		d = &dayCounts{Day: day, Lines: map[string]*[24][2]int{}, Zones: map[string]*[24]int{}}
		c.counts[e.Camera] = d
	}
	defer func() {
		if time.Since(c.savedAt) >= countsEvery {
			c.saveCountsLocked()
		}
	}()
	for _, l := range e.Lines {
		if d.Lines[l.ID] == nil {
			d.Lines[l.ID] = &[24][2]int{}
		}
		d.Lines[l.ID][h][0] += l.Entries
		d.Lines[l.ID][h][1] += l.Exits
	}
	for _, z := range e.Zones {
		if d.Zones[z.ID] == nil {
			d.Zones[z.ID] = &[24]int{}
		}
		d.Zones[z.ID][h] = max(d.Zones[z.ID][h], z.Peak)
	}
}

// countsCSV serves a camera's counts by hour, as CSV: one row per hour
// and line (entries, exits) or zone (peak occupancy); today, or the days
// from..to (YYYY-MM-DD, at most 92).
func (c *Console) countsCSV(w http.ResponseWriter, r *http.Request, x *session) {
	cam, ok := c.cams[strings.TrimSuffix(r.PathValue("file"), ".csv")]
	if !ok || !strings.HasSuffix(r.PathValue("file"), ".csv") {
		http.NotFound(w, r)
		return
	}
	days := []string{time.Now().Format("2006-01-02")}
	if q := r.URL.Query(); q.Has("from") || q.Has("to") {
		from, err1 := time.ParseInLocation("2006-01-02", q.Get("from"), time.Local)
		to, err2 := time.ParseInLocation("2006-01-02", q.Get("to"), time.Local)
		if err1 != nil || err2 != nil || from.After(to) || to.Sub(from) > maxRange*24*time.Hour {
			http.Error(w, "give from and to as YYYY-MM-DD, from not after to, at most 92 days", http.StatusBadRequest)
			return
		}
		days = daysIn(from, to)
	}
	var rows [][]string
	c.mu.Lock()
	for _, day := range days {
		d := c.dayOfLocked(cam.ID, day)
		if d == nil {
			continue
		}
		for _, id := range slices.Sorted(maps.Keys(d.Lines)) {
			for hr, v := range d.Lines[id] {
				rows = append(rows, []string{d.Day, fmt.Sprintf("%02d:00", hr), "line", id, strconv.Itoa(v[0]), strconv.Itoa(v[1]), ""})
			}
		}
		for _, id := range slices.Sorted(maps.Keys(d.Zones)) {
			for hr, v := range d.Zones[id] {
				rows = append(rows, []string{d.Day, fmt.Sprintf("%02d:00", hr), "zone", id, "", "", strconv.Itoa(v)})
			}
		}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+cam.ID+`-counts.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"day", "hour", "kind", "id", "entries", "exits", "peak_occupancy"})
	cw.WriteAll(rows)
}

// dayCounts are one camera's counts of one day, per hour.
type dayCounts struct {
	Day   string                 `json:"day"`
	Lines map[string]*[24][2]int `json:"lines"` // entries, exits
	Zones map[string]*[24]int    `json:"zones"` // peak occupancy
}

// countsFile keeps today's counts in the console's directory (the audit
// log's), so that a restart does not start the charts from zero.
const countsFile = "counts.json"

// countsEvery is how often the counts are written, at most; the last
// write is at Close.
const countsEvery = 10 * time.Second

// loadCounts reads the counts a previous run kept; a missing or damaged
// file starts from nothing (logged).
func (c *Console) loadCounts() {
	b, err := os.ReadFile(filepath.Join(c.cfg.Audit.Dir, countsFile))
	if err == nil {
		err = json.Unmarshal(b, &c.counts)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("today's counts could not be read back: the charts start from zero", "file", countsFile, "err", err)
		c.counts = map[string]*dayCounts{}
	}
	if c.counts == nil {
		c.counts = map[string]*dayCounts{}
	}
	for cam, d := range c.counts {
		if d == nil || d.Lines == nil || d.Zones == nil {
			delete(c.counts, cam)
		}
	}
	b, err = os.ReadFile(filepath.Join(c.cfg.Audit.Dir, daysFile))
	if err == nil {
		err = json.Unmarshal(b, &c.days)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("past days' counts could not be read back", "file", daysFile, "err", err)
	}
	if c.days == nil {
		c.days = map[string]map[string]*dayCounts{}
	}
	for cam, days := range c.days {
		for day, d := range days {
			if d == nil || d.Lines == nil || d.Zones == nil {
				delete(days, day)
			}
		}
		if len(days) == 0 {
			delete(c.days, cam)
		}
	}
	today := time.Now().Format("2006-01-02")
	for cam, d := range c.counts {
		if d.Day < today {
			c.keepDayLocked(cam, d)
			delete(c.counts, cam)
		}
	}
}

// saveCountsLocked writes the counts (c.mu held): to a temporary file,
// then renamed over the old, so a crash leaves one or the other whole.
func (c *Console) saveCountsLocked() {
	c.savedAt = time.Now()
	for name, v := range map[string]any{countsFile: c.counts, daysFile: c.days} {
		if err := writeJSON(filepath.Join(c.cfg.Audit.Dir, name), v); err != nil {
			c.log.Warn("keeping the counts", "file", name, "err", err)
		}
	}
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".partial"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// daysFile keeps the finished days' counts, per camera, for the charts of
// a week or a chosen range.
const daysFile = "counts-days.json"

// keepDays is how many days of counts the console keeps when
// privacy.counts_keep does not say (Prometheus keeps the long history).
const keepDays = 366

// keepDayLocked moves a finished day into the history, and forgets days
// past the retention (c.mu held).
func (c *Console) keepDayLocked(camera string, d *dayCounts) {
	if c.days[camera] == nil {
		c.days[camera] = map[string]*dayCounts{}
	}
	c.days[camera][d.Day] = d
	keep := keepDays
	if k := c.cfg.Privacy.CountsKeep; k > 0 {
		keep = max(1, int(k.Hours()/24))
	}
	oldest := time.Now().AddDate(0, 0, -keep).Format("2006-01-02")
	for _, days := range c.days {
		for day := range days {
			if day < oldest {
				delete(days, day)
			}
		}
	}
}

// dayOf is camera's counts of day (today's or a kept day's; nil: none).
// c.mu held.
func (c *Console) dayOfLocked(camera, day string) *dayCounts {
	if d := c.counts[camera]; d != nil && d.Day == day {
		return d
	}
	return c.days[camera][day]
}

// chart is one bar chart of a day by hour, drawn as SVG by the template:
// bars, a y axis up to Top, the hours under them, a legend.
type chart struct {
	Title  string
	Total  string
	Bars   []bar
	Height int
	Top    int
	Legend []legend
	Ticks  []tick // under the x axis
	XAxis  string // what the x axis counts
}

type tick struct {
	X     int
	Label string
}

// hourTicks label a day's 24 hours, every six.
func hourTicks() []tick {
	var t []tick
	for h := 0; h <= 24; h += 6 {
		t = append(t, tick{h * 24, fmt.Sprintf("%02d", h)})
	}
	return t
}

type legend struct{ Class, Label string }

type bar struct {
	X, Y, W, H int
	Label      string
	Class      string
}

func (c *Console) charts(camera string) []chart {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.counts[camera]
	if d == nil || d.Day != time.Now().Format("2006-01-02") {
		return nil
	}
	lines, zones := map[string][][2]int{}, map[string][]int{}
	for id, v := range d.Lines {
		lines[id] = v[:]
	}
	for id, v := range d.Zones {
		zones[id] = v[:]
	}
	hours := make([]string, 24)
	for h := range hours {
		hours[h] = fmt.Sprintf("%02d:00", h)
	}
	return slots{labels: hours, width: 24, gap: 2, ticks: hourTicks(), xAxis: "hours of the day",
		zoneLegend: "peak occupancy in the hour", when: " today"}.draw(lines, zones)
}

// slots say how a chart's x axis is cut: hours of a day, or days.
type slots struct {
	labels            []string // each slot's, in its bars' titles
	width, gap        int      // a slot's width, and the gap after each bar
	ticks             []tick
	xAxis, zoneLegend string
	when              string // after the totals: " today", ", FROM – TO"
}

// draw makes the charts: per line, entries and exits side by side in each
// slot; per zone, the slot's peak.
func (s slots) draw(lines map[string][][2]int, zones map[string][]int) []chart {
	const h = 80
	bw := max(1, s.width/2)
	dir := [2]string{"in", "out"}
	var out []chart
	for _, id := range slices.Sorted(maps.Keys(lines)) {
		v := lines[id]
		top, in, outN := 1, 0, 0
		for _, x := range v {
			top = max(top, x[0], x[1])
			in += x[0]
			outN += x[1]
		}
		ch := chart{Title: "line " + id, Total: fmt.Sprintf("%d in, %d out%s", in, outN, s.when), Height: h, Top: top,
			Legend: []legend{{"in", "in"}, {"out", "out"}}, Ticks: s.ticks, XAxis: s.xAxis}
		for i, x := range v {
			for k, n := range x {
				bh := n * h / top
				ch.Bars = append(ch.Bars, bar{X: i*s.width + k*bw, Y: h - bh, W: max(1, bw-s.gap), H: bh,
					Label: fmt.Sprintf("%s %s %d", s.labels[i], dir[k], n), Class: dir[k]})
			}
		}
		out = append(out, ch)
	}
	for _, id := range slices.Sorted(maps.Keys(zones)) {
		v := zones[id]
		top, peak := 1, 0
		for _, n := range v {
			top, peak = max(top, n), max(peak, n)
		}
		ch := chart{Title: "zone " + id, Total: fmt.Sprintf("peak %d%s", peak, s.when), Height: h, Top: top,
			Legend: []legend{{"occ", s.zoneLegend}}, Ticks: s.ticks, XAxis: s.xAxis}
		for i, n := range v {
			bh := n * h / top
			ch.Bars = append(ch.Bars, bar{X: i * s.width, Y: h - bh, W: max(1, s.width-s.gap), H: bh, Label: fmt.Sprintf("%s peak %d", s.labels[i], n), Class: "occ"})
		}
		out = append(out, ch)
	}
	return out
}

// maxRange bounds a chart or CSV of days.
const maxRange = 92

// daysIn lists the days from..to (YYYY-MM-DD, local), at most maxRange.
func daysIn(from, to time.Time) []string {
	var out []string
	for d := from; !d.After(to) && len(out) < maxRange; d = d.AddDate(0, 0, 1) {
		out = append(out, d.Format("2006-01-02"))
	}
	return out
}

// rangeCharts are camera's counts day by day over days: entries and exits
// per line, the day's peak per zone.
func (c *Console) rangeCharts(camera string, days []string) []chart {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines, zones := map[string][][2]int{}, map[string][]int{}
	for i, day := range days {
		d := c.dayOfLocked(camera, day)
		if d == nil {
			continue
		}
		for id, v := range d.Lines {
			if lines[id] == nil {
				lines[id] = make([][2]int, len(days))
			}
			for _, x := range v {
				lines[id][i][0] += x[0]
				lines[id][i][1] += x[1]
			}
		}
		for id, v := range d.Zones {
			if zones[id] == nil {
				zones[id] = make([]int, len(days))
			}
			for _, n := range v {
				zones[id][i] = max(zones[id][i], n)
			}
		}
	}
	slot := 576 / len(days)
	var ticks []tick
	every := (len(days) + 6) / 7
	for i, day := range days {
		if i%every == 0 {
			ticks = append(ticks, tick{i*slot + slot/2, day[5:]})
		}
	}
	return slots{labels: days, width: slot, gap: 1, ticks: ticks, xAxis: "days",
		zoneLegend: "peak occupancy in the day", when: ", " + days[0] + " – " + days[len(days)-1]}.draw(lines, zones)
}

// hourCell is one hour of the count strip under the timeline.
type hourCell struct {
	Opacity string
	Label   string
}

// hourCounts is the strip of the day's crossings by hour, darker for
// busier hours, under the timeline (nil: no counts that day).
func (c *Console) hourCounts(camera, day string) []hourCell {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.dayOfLocked(camera, day)
	if d == nil || len(d.Lines) == 0 {
		return nil
	}
	var in, out [24]int
	top := 1
	for _, v := range d.Lines {
		for h, x := range v {
			in[h] += x[0]
			out[h] += x[1]
		}
	}
	for h := range in {
		top = max(top, in[h]+out[h])
	}
	cells := make([]hourCell, 24)
	for h := range cells {
		cells[h] = hourCell{Opacity: fmt.Sprintf("%.2f", 0.08+0.92*float64(in[h]+out[h])/float64(top)),
			Label: fmt.Sprintf("%02d:00 %d in, %d out", h, in[h], out[h])}
	}
	return cells
}
