package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
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

// limiter refuses logins after too many failures, per client address and
// per user name: maxFailures within failureWindow, then no attempt is
// even checked until the window has passed.
type limiter struct {
	mu       sync.Mutex
	failures map[string][]time.Time
}

const (
	maxFailures   = 5
	failureWindow = 15 * time.Minute
)

func (l *limiter) blocked(keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, k := range keys {
		fs := l.failures[k][:0]
		for _, t := range l.failures[k] {
			if now.Sub(t) < failureWindow {
				fs = append(fs, t)
			}
		}
		if len(fs) == 0 {
			delete(l.failures, k)
		} else {
			l.failures[k] = fs
		}
		if len(fs) >= maxFailures {
			return true
		}
	}
	return false
}

func (l *limiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 100000 { // a flood of names: forget, rather than grow without bound
		l.failures = map[string][]time.Time{}
	}
	for _, k := range keys {
		l.failures[k] = append(l.failures[k], time.Now())
	}
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
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return nil
	}
	return found
}

// clientIP is the request's remote address without the port.
func clientIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// tokenEq compares a token from a request with the expected one in
// constant time; an empty token matches nothing.
func tokenEq(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
