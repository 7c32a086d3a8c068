package rtcconf

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Gate throttles wrong bearer tokens (WHIP publishers, WHEP view tokens)
// per client address, as the console's login does for passwords:
// gateFailures wrong tokens within gateWindow block the address for
// gateWindow. Each refusal is reported, and the block once, so a guesser
// is on record without being able to flood the record.
type Gate struct {
	// Refused is told of a wrong token (what it was for: whip or whep, the
	// camera asked for, the client's address, and whether the address is
	// now blocked). Nil: nobody.
	Refused func(kind, camera, from string, blocked bool)

	mu    sync.Mutex
	addrs map[string]*gateEntry
	now   func() time.Time
}

type gateEntry struct {
	fails []time.Time
	until time.Time
}

const (
	gateFailures = 10
	gateWindow   = 10 * time.Minute
	gateMaxAddrs = 100000
)

// Blocked says whether req's address may not try a token now, and until
// when.
func (g *Gate) Blocked(req *http.Request) (bool, time.Time) {
	if g == nil {
		return false, time.Time{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.addrs[ClientIP(req)]
	if e != nil && g.clock().Before(e.until) {
		return true, e.until
	}
	return false, time.Time{}
}

// Fail notes a wrong token from req's address for kind and camera.
func (g *Gate) Fail(req *http.Request, kind, camera string) {
	if g == nil {
		return
	}
	from := ClientIP(req)
	g.mu.Lock()
	now := g.clock()
	if g.addrs == nil || len(g.addrs) > gateMaxAddrs {
		g.addrs = map[string]*gateEntry{} // a flood of addresses: forget, rather than grow
	}
	e := g.addrs[from]
	if e == nil {
		e = &gateEntry{}
		g.addrs[from] = e
	}
	fs := e.fails[:0]
	for _, t := range e.fails {
		if now.Sub(t) < gateWindow {
			fs = append(fs, t)
		}
	}
	e.fails = append(fs, now)
	blocked := len(e.fails) >= gateFailures
	if blocked {
		e.until, e.fails = now.Add(gateWindow), nil
	}
	g.mu.Unlock()
	if g.Refused != nil {
		g.Refused(kind, camera, from, blocked)
	}
}

func (g *Gate) clock() time.Time {
	if g.now != nil {
		return g.now()
	}
	return time.Now()
}

// ClientIP is the request's remote address without the port.
func ClientIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}
