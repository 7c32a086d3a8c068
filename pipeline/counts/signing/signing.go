// Package signing signs count events per site, so that an exporter can
// tell a site's own counts from anything else written to the topic: each
// site has its own key (HMAC-SHA256 over the event as sent), the box signs
// with it, and the exporter accepts an event only under a key of the site
// the event names. Two keys of a site are accepted at once while a key is
// rotated.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/veilproject/veil/footfall"
)

// Header is the Kafka message header that carries the signature.
const Header = "veil-signature"

// prefix versions the signature's form, so that a later scheme can be told
// apart.
const prefix = "v1="

// MinKeyBytes is the shortest key taken: HMAC-SHA256's block of strength.
const MinKeyBytes = 32

// Key is one site's secret.
type Key []byte

// ParseKey reads a key written as hex (64 characters or more; `openssl
// rand -hex 32` makes one), surrounding white space ignored.
func ParseKey(text string) (Key, error) {
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, errors.New("not hex")
	}
	if len(b) < MinKeyBytes {
		return nil, fmt.Errorf("%d bytes, want at least %d (64 hex characters)", len(b), MinKeyBytes)
	}
	return b, nil
}

// LoadKey reads a key file. A file others can read is refused: the key
// lets whoever has it write a site's counts.
func LoadKey(path string) (Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v lets others read the key (chmod 600)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Sign is the signature of value under k, as the header carries it.
func Sign(k Key, value []byte) string {
	m := hmac.New(sha256.New, k)
	m.Write(value)
	return prefix + hex.EncodeToString(m.Sum(nil))
}

// Verify says whether sig is value's signature under one of keys.
func Verify(keys []Key, value []byte, sig string) bool {
	got, err := hex.DecodeString(strings.TrimPrefix(sig, prefix))
	if err != nil || !strings.HasPrefix(sig, prefix) || len(got) != sha256.Size {
		return false
	}
	ok := false
	for _, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write(value)
		// Every key is tried, so the time taken does not say which.
		ok = hmac.Equal(m.Sum(nil), got) || ok
	}
	return ok
}

// Keyring is the exporter's keys: a directory holding files named
// SITE.key or SITE@TAG.key (for example nanjing-01@2026-12.key), each one
// key of that site. To rotate a site's key, add the new file, move the box
// to it, then remove the old file. The directory is read again when it or
// a key file in it changes (checked at most every few seconds), so
// rotation needs no restart.
type Keyring struct {
	dir string

	mu      sync.Mutex
	keys    map[string][]Key
	mod     time.Time
	checked time.Time
	err     error
}

// recheck is how often the directory's modification time is looked at.
const recheck = 5 * time.Second

// OpenKeyring loads dir; it must hold at least one good key, and a bad
// file is an error naming it.
func OpenKeyring(dir string) (*Keyring, error) {
	r := &Keyring{dir: dir}
	keys, mod, err := loadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no SITE.key or SITE@TAG.key files", dir)
	}
	r.keys, r.mod, r.checked = keys, mod, time.Now()
	return r, nil
}

// Keys returns site's keys (none: the site is not known here). When the
// directory has changed, it is read again first; if it has gone bad
// (a malformed file, half written), the keys loaded before are kept and
// Err says why.
func (r *Keyring) Keys(site string) []Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= recheck {
		r.checked = now
		if mod, err := latest(r.dir); err == nil && !mod.Equal(r.mod) {
			keys, mod, err := loadDir(r.dir)
			r.err = err
			if err == nil {
				r.keys, r.mod = keys, mod
			}
		}
	}
	return r.keys[site]
}

// Sites lists the sites with keys.
func (r *Keyring) Sites() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for s := range r.keys {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Err is why the directory's last change was not taken (nil: it was).
func (r *Keyring) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// latest is the newest modification of dir or of a key file in it: a file
// added or removed changes the directory's, a key rewritten in place its
// own.
func latest(dir string) (time.Time, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return time.Time{}, err
	}
	mod := st.ModTime()
	names, _ := filepath.Glob(filepath.Join(dir, "*.key"))
	for _, p := range names {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(mod) {
			mod = fi.ModTime()
		}
	}
	return mod, nil
}

func loadDir(dir string) (map[string][]Key, time.Time, error) {
	mod, err := latest(dir)
	if err != nil {
		return nil, time.Time{}, err
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.key"))
	if err != nil {
		return nil, time.Time{}, err
	}
	keys := map[string][]Key{}
	for _, p := range names {
		site, _, _ := strings.Cut(strings.TrimSuffix(filepath.Base(p), ".key"), "@")
		if err := footfall.ValidID(site); err != nil {
			return nil, time.Time{}, fmt.Errorf("%s: site: %w", p, err)
		}
		k, err := LoadKey(p)
		if err != nil {
			return nil, time.Time{}, err
		}
		keys[site] = append(keys[site], k)
	}
	return keys, mod, nil
}
