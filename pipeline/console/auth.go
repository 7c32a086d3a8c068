package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const (
	sessionCookie = "veil_session"
	loginCookie   = "veil_login" // double-submit CSRF token of the login form
	csrfHeader    = "X-CSRF-Token"
)

// session is one login.
type session struct {
	user, role, csrf string
	expires          time.Time
}

// sessions are the logins, in memory: a restart logs everyone out.
type sessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*session // by token
}

func token() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *sessions) create(user, role string) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for t, x := range s.m { // expired logins go as new ones come
		if now.After(x.expires) {
			delete(s.m, t)
		}
	}
	t := token()
	x := &session{user: user, role: role, csrf: token(), expires: now.Add(s.ttl)}
	s.m[t] = x
	return t, x
}

// get is the request's session, or nil.
func (s *sessions) get(r *http.Request) (string, *session) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.m[c.Value]
	if x == nil || time.Now().After(x.expires) {
		delete(s.m, c.Value)
		return "", nil
	}
	return c.Value, x
}

// loginID names a login without its token: a hash, safe to hold outside
// the sessions (a live view's, a fetch's record) without being a
// credential.
func loginID(t string) string {
	if t == "" {
		return ""
	}
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:8])
}

// recent remembers keys for auditRepeat: what was audited a moment ago
// is not audited again (a player's range requests while seeking).
type recent struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

const auditRepeat = 5 * time.Minute

// first says whether key was not seen within auditRepeat, and notes it.
func (r *recent) first(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]time.Time{}
	}
	if t, ok := r.seen[key]; ok && now.Sub(t) < auditRepeat {
		return false
	}
	for k, t := range r.seen {
		if now.Sub(t) >= auditRepeat {
			delete(r.seen, k)
		}
	}
	r.seen[key] = now
	return true
}

func (r *recent) forget(key string) {
	r.mu.Lock()
	delete(r.seen, key)
	r.mu.Unlock()
}

// of is the tokens of user's sessions.
func (s *sessions) of(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t, x := range s.m {
		if x.user == user {
			out = append(out, t)
		}
	}
	return out
}

func (s *sessions) delete(t string) {
	s.mu.Lock()
	delete(s.m, t)
	s.mu.Unlock()
}

// csrfOK checks the request's CSRF token (header or form field) against
// the session's, in constant time.
func csrfOK(r *http.Request, x *session) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return tokenEq(got, x.csrf)
}

// limiter throttles password checks per key (a client address, a user
// name, a trusted browser): maxFailures failures in a row lock the key
// out for lockoutBase, and each further failure doubles the lockout, up
// to lockoutMax. A key's failures are forgotten failureWindow after its
// last failure or lockout, whichever ends later.
//
// An attempt is reserved under the lock before its password is checked
// and settled after, so attempts arriving together cannot all pass a
// limit that only their results would have reached.
type limiter struct {
	mu   sync.Mutex
	keys map[string]*attempts
	now  func() time.Time
}

type attempts struct {
	fails   int       // in a row
	last    time.Time // the last failure
	until   time.Time // locked out until
	pending int       // reserved, being checked
	refused int       // attempts refused while locked out, not yet reported
}

const (
	maxFailures    = 5
	failureWindow  = 15 * time.Minute
	lockoutBase    = time.Minute
	lockoutMax     = time.Hour
	maxLimiterKeys = 100000
)

func newLimiter() *limiter {
	return &limiter{keys: map[string]*attempts{}, now: time.Now}
}

// refusal says why an attempt was not checked: until when, and whether
// it is the first refusal of this lockout (the one audited).
type refusal struct {
	key   string
	until time.Time
	first bool
}

// reserve admits an attempt on every key, or refuses it for the first key
// that is locked out. suppressed are refusals of lockouts that have ended
// since they were last reported, by key (for a summary line).
func (l *limiter) reserve(keys ...string) (ok bool, why refusal, suppressed map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		a := l.keys[k]
		if a == nil {
			continue
		}
		if now.Before(a.until) || (a.fails+a.pending >= maxFailures && a.pending > 0) {
			// Locked out, or the attempts already in flight would reach
			// the limit: this one waits its turn.
			until := a.until
			if !now.Before(until) {
				until = now.Add(time.Second)
			}
			a.refused++
			return false, refusal{key: k, until: until, first: a.refused == 1}, nil
		}
		if a.refused > 0 {
			if suppressed == nil {
				suppressed = map[string]int{}
			}
			suppressed[k] = a.refused
			a.refused = 0
		}
	}
	if len(l.keys) > maxLimiterKeys {
		l.forget(now)
	}
	for _, k := range keys {
		a := l.keys[k]
		if a == nil {
			a = &attempts{}
			l.keys[k] = a
		}
		a.pending++
	}
	return true, refusal{}, suppressed
}

// settle ends a reserved attempt: a failure counts towards the lockout, a
// success clears the keys.
func (l *limiter) settle(failed bool, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		a := l.keys[k]
		if a == nil {
			continue
		}
		a.pending--
		if !failed {
			delete(l.keys, k)
			continue
		}
		if now.Sub(later(a.last, a.until)) > failureWindow {
			a.fails = 0
		}
		a.fails++
		a.last = now
		if a.fails >= maxFailures {
			lock := lockoutBase << min(a.fails-maxFailures, 6)
			a.until = now.Add(min(lock, lockoutMax))
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// release ends a reserved attempt that was never checked (the server was
// busy): it counts neither way.
func (l *limiter) release(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if a := l.keys[k]; a != nil {
			a.pending--
		}
	}
}

// forget drops keys with nothing in flight whose lockout and failures are
// over: a flood of names cannot grow the map without bound.
func (l *limiter) forget(now time.Time) {
	for k, a := range l.keys {
		if a.pending == 0 && now.Sub(later(a.last, a.until)) > failureWindow {
			delete(l.keys, k)
		}
	}
	if len(l.keys) > maxLimiterKeys { // still: every key is active; keep the locked ones
		for k, a := range l.keys {
			if a.pending == 0 && !now.Before(a.until) {
				delete(l.keys, k)
			}
		}
	}
}

// checks bounds concurrent password checks: bcrypt at cost 12 takes a
// core for a quarter of a second, and a burst of logins must not take
// the cores the detector needs. An attempt over the bound is refused at
// once (503), never queued.
type checks chan struct{}

func newChecks() checks {
	return make(checks, max(1, runtime.NumCPU()/4))
}

func (c checks) try() bool {
	select {
	case c <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c checks) done() { <-c }

// devices recognise browsers that have logged in before, by a signed
// cookie naming the user (OWASP's "device cookies"): such a browser's
// attempts are limited on their own, so failures by others, from one
// address or against one name, never lock the guard's own browser out.
type devices struct {
	key []byte
}

const deviceCookie = "veil_device"

// deviceKeyFile holds the key that signs device cookies, so that they
// outlive a restart.
const deviceKeyFile = "device-cookie.key"

func newDevices(dir string) (*devices, error) {
	path := filepath.Join(dir, deviceKeyFile)
	key, err := os.ReadFile(path)
	if err == nil && len(key) == 32 {
		return &devices{key: key}, nil
	}
	key = make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("console.audit.dir: the device cookie key: %w", err)
	}
	return &devices{key: key}, nil
}

func (d *devices) sign(user, id string) string {
	m := hmac.New(sha256.New, d.key)
	m.Write([]byte(user + "\x00" + id))
	return hex.EncodeToString(m.Sum(nil))
}

// issue is a new device cookie's value for user.
func (d *devices) issue(user string) string {
	id := token()[:32]
	return id + "." + d.sign(user, id)
}

// id is the device's id if r carries a cookie signed for user, else "".
func (d *devices) id(r *http.Request, user string) string {
	c, err := r.Cookie(deviceCookie)
	if err != nil {
		return ""
	}
	id, mac, ok := strings.Cut(c.Value, ".")
	if !ok || len(id) != 32 || !hmac.Equal([]byte(mac), []byte(d.sign(user, id))) {
		return ""
	}
	return id
}

// dummyHash is checked for unknown users, so that a login takes as long
// whether or not the name exists: the hash, at cost 12, of a password no
// user has. It is written out because generating it at start-up cost
// every veil command, veil anonymize included, about a quarter of a second
// of CPU (TestDummyHashCostsWhatUsersCost keeps it at users' cost).
var dummyHash = []byte("$2a$12$KFwxXZPaWyuljrZW/xVZfeFFhIxgCY.3OeUzTWjju6mbZY7MxUwuG")

// check verifies name and password in constant time with respect to the
// user list; it returns the user, or nil.
func check(users []User, name, password string) *User {
	var found *User
	hash := dummyHash
	for i := range users {
		if subtle.ConstantTimeCompare([]byte(users[i].Name), []byte(name)) == 1 {
			found, hash = &users[i], []byte(users[i].PasswordHash)
		}
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || found != nil && found.Disabled {
		return nil // a disabled user's password is checked all the same: no timing tells
	}
	return found
}

// tokenEq compares a token from a request with the expected one in
// constant time; an empty token matches nothing.
func tokenEq(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
