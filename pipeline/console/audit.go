package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veilproject/veil/pipeline/wallclock"
)

// Audit kinds, the values of veil_audit_events_total{kind}.
const (
	AuditLogin         = "login"
	AuditLoginFailed   = "login_failed"
	AuditLogout        = "logout"
	AuditLiveView      = "live_view"
	AuditLiveViewStart = "live_view_start"
	AuditPlay          = "recording_play"
	AuditDownload      = "recording_download"
	AuditConfigLoaded  = "config_loaded"
	AuditDenied        = "denied"
	AuditTokenRefused  = "token_refused"
	AuditPublisher     = "publisher_replaced"
	AuditExport        = "audit_export"
	AuditUserChanged   = "user_changed"
	// AuditPreview: the pictures of a camera's day were shown (the strip
	// under the timeline).
	AuditPreview = "recording_preview"
	// AuditCountingChanged: an admin changed a camera's lines and zones.
	AuditCountingChanged = "counting_changed"
)

var auditKinds = []string{AuditLogin, AuditLoginFailed, AuditLogout, AuditLiveView, AuditLiveViewStart, AuditPlay, AuditDownload,
	AuditConfigLoaded, AuditDenied, AuditTokenRefused, AuditPublisher, AuditExport, AuditUserChanged, AuditCountingChanged, AuditPreview}

// Event is one line of the audit log.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	User   string    `json:"user,omitempty"`
	From   string    `json:"from,omitempty"`
	Camera string    `json:"camera,omitempty"`
	File   string    `json:"file,omitempty"`
	Start  time.Time `json:"start,omitzero"`
	End    time.Time `json:"end,omitzero"`
	Detail string    `json:"detail,omitempty"`
}

// Field caps: what a request supplies (a name typed at the login) is cut
// to these before it is written, so no request can write more than a
// short line.
const (
	maxNameField   = 64
	maxDetailField = 256
)

// Audit is the append-only audit log: JSON-lines files named by day
// (audit-YYYY-MM-DD.jsonl, then audit-YYYY-MM-DD.N.jsonl when a day's file
// reaches its size), opened for appending only, mode 0600. Files older
// than keep are deleted, and the oldest files go when all of them together
// pass max_bytes, so the log cannot fill its disk.
type Audit struct {
	dir      string
	keep     time.Duration
	maxBytes int64
	fileMax  int64
	log      *slog.Logger
	events   *prometheus.CounterVec
	pruned   *prometheus.CounterVec

	clock wallclock.Guard

	mu   sync.Mutex
	name string // the file being written
	f    *os.File
	size int64
}

// NewAudit opens the log in dir and registers veil_audit_events_total and
// veil_audit_files_deleted_total.
func NewAudit(cfg AuditConfig, log *slog.Logger, reg prometheus.Registerer) (*Audit, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("console.audit.dir %s: %w", cfg.Dir, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Audit{dir: cfg.Dir, keep: cfg.Keep, maxBytes: cfg.MaxBytes, fileMax: max(cfg.MaxBytes/16, 64<<10), log: log.With("component", "audit"),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_audit_events_total",
			Help: "Audit log entries, by kind: login, login_failed, logout, live_view_start, live_view, recording_play, recording_download, config_loaded, denied, token_refused, publisher_replaced, audit_export, user_changed, counting_changed, recording_preview."}, []string{"kind"}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_audit_files_deleted_total",
			Help: "Audit log files deleted: reason age (older than console.audit.keep) or size (the log passed console.audit.max_bytes)."}, []string{"reason"})}
	for _, c := range []prometheus.Collector{a.events, a.pruned} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, k := range auditKinds {
		a.events.WithLabelValues(k)
	}
	a.pruned.WithLabelValues("age")
	a.pruned.WithLabelValues("size")
	return a, nil
}

// clip cuts s to at most n bytes, on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Log appends e (its Time set now if zero). A write that fails is an
// error: the caller refuses what it was about to allow.
func (a *Audit) Log(e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	e.User, e.From, e.Camera, e.File = clip(e.User, maxNameField), clip(e.From, maxNameField), clip(e.Camera, maxNameField), clip(e.File, maxDetailField)
	e.Detail = clip(e.Detail, maxDetailField)
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.open(e.Time, int64(len(b))); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	n, err := a.f.Write(b)
	a.size += int64(n)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	a.events.WithLabelValues(e.Kind).Inc()
	return nil
}

// open makes a.f the file an entry of n bytes at t goes to: the day's
// current file, or the next one when the day changed or the file is full.
func (a *Audit) open(t time.Time, n int64) error {
	day := t.Format("2006-01-02")
	if a.f != nil && auditDay(a.name) == day && a.size+n <= a.fileMax {
		return nil
	}
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	files := a.files()
	idx := 0
	for _, f := range files {
		if f.day == day {
			idx = max(idx, f.idx)
		}
	}
	for ; ; idx++ {
		name := auditFileName(day, idx)
		info, err := os.Stat(filepath.Join(a.dir, name))
		if err == nil && info.Size()+n > a.fileMax {
			continue
		}
		f, err := os.OpenFile(filepath.Join(a.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		a.f, a.name, a.size = f, name, 0
		if info != nil {
			a.size = info.Size()
		}
		break
	}
	a.prune()
	return nil
}

var auditFile = regexp.MustCompile(`^audit-(\d{4}-\d{2}-\d{2})(?:\.(\d+))?\.jsonl$`)

func auditFileName(day string, idx int) string {
	if idx == 0 {
		return "audit-" + day + ".jsonl"
	}
	return "audit-" + day + "." + strconv.Itoa(idx) + ".jsonl"
}

func auditDay(name string) string {
	if m := auditFile.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return ""
}

type auditFileInfo struct {
	name string
	day  string
	idx  int
	size int64
}

// files are the log's files, oldest first. Only files named as the log
// names them count: anything else in the directory is left alone.
func (a *Audit) files() []auditFileInfo {
	ents, _ := os.ReadDir(a.dir)
	var out []auditFileInfo
	for _, e := range ents {
		m := auditFile.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		idx, _ := strconv.Atoi(m[2])
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, auditFileInfo{name: e.Name(), day: m[1], idx: idx, size: info.Size()})
	}
	slices.SortFunc(out, func(x, y auditFileInfo) int {
		if x.day != y.day {
			return strings.Compare(x.day, y.day)
		}
		return x.idx - y.idx
	})
	return out
}

// prune deletes files older than keep, then the oldest while the log is
// larger than max_bytes; never the file being written.
func (a *Audit) prune() {
	files := a.files()
	var total int64
	for _, f := range files {
		total += f.size
	}
	// Days are aged by a clock a jump cannot move: a clock set ahead must
	// not delete the trail.
	now, jump := a.clock.Now()
	if jump != 0 {
		a.log.Error("the wall clock jumped: audit files are aged by the monotonic clock", "jump", jump.Round(time.Second))
	}
	for _, f := range files {
		if f.name == a.name {
			break
		}
		reason := ""
		if day, err := time.Parse("2006-01-02", f.day); err == nil && now.Sub(day) > a.keep+24*time.Hour {
			reason = "age"
		} else if a.maxBytes > 0 && total > a.maxBytes {
			reason = "size"
		}
		if reason == "" {
			continue
		}
		if err := os.Remove(filepath.Join(a.dir, f.name)); err != nil {
			a.log.Error("deleting an audit file", "file", f.name, "err", err)
			continue
		}
		total -= f.size
		a.pruned.WithLabelValues(reason).Inc()
		if reason == "size" {
			a.log.Warn("audit log over console.audit.max_bytes: its oldest file deleted", "file", f.name, "max_bytes", a.maxBytes)
		}
	}
}

// Recent is up to n of the latest entries, newest first (the admin page).
// Files are read from their end, a block at a time, so a large log costs
// only what is shown.
func (a *Audit) Recent(n int) []Event {
	files := a.files()
	var out []Event
	for i := len(files) - 1; i >= 0 && len(out) < n; i-- {
		out = tailEvents(filepath.Join(a.dir, files[i].name), n-len(out), out)
	}
	return out
}

// tailEvents appends to out up to n entries of the file at path, last
// first.
func tailEvents(path string, n int, out []Event) []Event {
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return out
	}
	const block = 64 << 10
	end := info.Size()
	var rest []byte // the start of a line whose beginning is in an earlier block
	for end > 0 && n > 0 {
		start := max(end-block, 0)
		buf := make([]byte, end-start, end-start+int64(len(rest)))
		if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
			return out
		}
		buf = append(buf, rest...)
		lines := bytes.Split(buf, []byte{'\n'})
		first := 0
		if start > 0 {
			first = 1 // may be cut: kept for the next block
			rest = lines[0]
		}
		for i := len(lines) - 1; i >= first && n > 0; i-- {
			var e Event
			if len(lines[i]) > 0 && json.Unmarshal(lines[i], &e) == nil {
				out = append(out, e)
				n--
			}
		}
		if start > 0 && len(rest) > 1<<20 {
			return out // no entry is this long: not the log's own line
		}
		end = start
	}
	return out
}

// Close closes the current file.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
