package pipeline

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves a certificate and key from files and reloads them
// when either file changes, so that a renewed certificate is served
// without a restart. A file that no longer loads keeps the previous pair
// in service, logged once per change.
type certReloader struct {
	cert, key string
	log       *slog.Logger
	every     time.Duration // how often the files are looked at, at most

	mu      sync.Mutex
	cur     *tls.Certificate
	mods    [2]time.Time
	checked time.Time
}

// newCertReloader loads the pair now: a wrong file is an error at start,
// naming it.
func newCertReloader(key, certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{cert: certFile, key: keyFile, log: log, every: 5 * time.Second}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return r, nil
}

func (r *certReloader) stat() ([2]time.Time, error) {
	var m [2]time.Time
	for i, f := range []string{r.cert, r.key} {
		st, err := os.Stat(f)
		if err != nil {
			return m, err
		}
		m[i] = st.ModTime()
	}
	return m, nil
}

func (r *certReloader) load() error {
	mods, err := r.stat()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		return err
	}
	r.cur, r.mods = &c, mods
	return nil
}

// GetCertificate is tls.Config's hook.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= r.every {
		r.checked = time.Now()
		if mods, err := r.stat(); err == nil && mods != r.mods {
			if err := r.load(); err != nil {
				r.mods = mods // logged once for this change
				r.log.Error("the new certificate does not load: the previous one is still served", "cert", r.cert, "err", err)
			} else {
				r.log.Info("certificate reloaded", "cert", r.cert)
			}
		}
	}
	return r.cur, nil
}
