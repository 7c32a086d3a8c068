package console

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Audit kinds, the values of veil_audit_events_total{kind}.
const (
	AuditLogin        = "login"
	AuditLoginFailed  = "login_failed"
	AuditLogout       = "logout"
	AuditLiveView     = "live_view"
	AuditPlay         = "recording_play"
	AuditDownload     = "recording_download"
	AuditConfigLoaded = "config_loaded"
	AuditDenied       = "denied"
)

var auditKinds = []string{AuditLogin, AuditLoginFailed, AuditLogout, AuditLiveView, AuditPlay, AuditDownload, AuditConfigLoaded, AuditDenied}

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

// Audit is the append-only audit log: one JSON-lines file a day
// (audit-YYYY-MM-DD.jsonl, opened for appending only, mode 0600), files
// older than keep deleted when a day begins.
type Audit struct {
	dir    string
	keep   time.Duration
	events *prometheus.CounterVec

	mu  sync.Mutex
	day string
	f   *os.File
}

// NewAudit opens the log in dir and registers veil_audit_events_total.
func NewAudit(cfg AuditConfig, reg prometheus.Registerer) (*Audit, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("console.audit.dir %s: %w", cfg.Dir, err)
	}
	a := &Audit{dir: cfg.Dir, keep: cfg.Keep, events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "veil_audit_events_total",
		Help: "Audit log entries, by kind: login, login_failed, logout, live_view, recording_play, recording_download, config_loaded, denied."}, []string{"kind"})}
	if err := reg.Register(a.events); err != nil {
		return nil, err
	}
	for _, k := range auditKinds {
		a.events.WithLabelValues(k)
	}
	return a, nil
}

// Log appends e (its Time set now if zero). A write that fails is an
// error: the caller refuses what it was about to allow.
func (a *Audit) Log(e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if day := e.Time.Format("2006-01-02"); day != a.day || a.f == nil {
		if a.f != nil {
			a.f.Close()
		}
		a.f, err = os.OpenFile(filepath.Join(a.dir, "audit-"+day+".jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			a.f = nil
			return fmt.Errorf("audit log: %w", err)
		}
		a.day = day
		a.prune(e.Time)
	}
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	a.events.WithLabelValues(e.Kind).Inc()
	return nil
}

// prune deletes day files older than keep.
func (a *Audit) prune(now time.Time) {
	files, _ := filepath.Glob(filepath.Join(a.dir, "audit-*.jsonl"))
	for _, f := range files {
		day, err := time.Parse("2006-01-02", strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "audit-"), ".jsonl"))
		if err == nil && now.Sub(day) > a.keep+24*time.Hour {
			os.Remove(f)
		}
	}
}

// Recent is up to n of the latest entries, newest first (the admin page).
func (a *Audit) Recent(n int) []Event {
	files, _ := filepath.Glob(filepath.Join(a.dir, "audit-*.jsonl"))
	sort.Sort(sort.Reverse(sort.StringSlice(files)))
	var out []Event
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
			var e Event
			if json.Unmarshal([]byte(lines[i]), &e) == nil {
				out = append(out, e)
			}
		}
		if len(out) >= n {
			break
		}
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
