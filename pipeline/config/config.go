// Package config is veil.yaml: the service's configuration types, their
// documented defaults, every VEIL_* environment override (in env.go, and
// nowhere else), and validation whose errors name the YAML key.
//
// Order of precedence: defaults, then the file, then the environment; the
// commands that take flags (demo, count, anonymize) start from Default()
// with the environment applied and let their flags override that.
package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/veilproject/veil/blur"
	"github.com/veilproject/veil/blur/detect/detectconf"
	"github.com/veilproject/veil/counter"
	"github.com/veilproject/veil/footfall"
	"github.com/veilproject/veil/pipeline/console"
	"github.com/veilproject/veil/pipeline/counts/kafkaconf"
	"github.com/veilproject/veil/pipeline/counts/signing"
	"github.com/veilproject/veil/pipeline/output/record/recordconf"
)

// Config is veil.yaml. veil.example.yaml documents every key, and the
// tests load it.
type Config struct {
	// Site names this box's office in count events and metrics, so that
	// offices sharing one Kafka cluster keep their cameras apart (two may
	// both have a lobby). Letters, digits, '_', '-', '.'. Required with
	// site_key_file.
	Site string `yaml:"site"`
	// SiteKeyFile holds the site's signing key (64 hex characters, mode
	// 600): every count event is sent signed with it, and an exporter with
	// the site's key applies only events so signed. $VEIL_SITE_KEY gives
	// the key itself instead.
	SiteKeyFile string `yaml:"site_key_file"`
	// SiteKey is the key, from $VEIL_SITE_KEY (hex).
	SiteKey string `yaml:"-"`
	// Placement spreads the site's cameras over the site's boxes, and
	// moves them when a box dies or returns (docs/fleet.md).
	Placement Placement `yaml:"placement"`
	Cameras   []Camera  `yaml:"cameras"`
	Metrics   Metrics   `yaml:"metrics"`
	HTTP      HTTP      `yaml:"http"`
	// Recordings of obscured video; an empty dir records nothing.
	Recordings recordconf.Config `yaml:"recordings"`
	// Blur is the obscuring policy, the same for every camera.
	Blur     blur.Config       `yaml:"blur"`
	Detector detectconf.Config `yaml:"detector"`
	// Kafka carries count events; without brokers they go to stdout.
	Kafka kafkaconf.Config `yaml:"kafka"`
	// SpoolDir holds count events Kafka has not acknowledged. It defaults
	// to ${recordings.dir}/spool, or ./veil-spool.
	SpoolDir string `yaml:"spool_dir"`
	// PrintEvents also prints each count event as a JSON line on stdout
	// when kafka.brokers is set (without brokers they are always printed).
	PrintEvents bool     `yaml:"print_events"`
	Exporter    Exporter `yaml:"exporter"`
	// Console is the guard's web console on http.listen: users, viewer
	// limits, the audit log, the privacy notice.
	Console console.Config `yaml:"console"`
	// Digest is the SHA-256 of the configuration file and the VEIL_*
	// overrides applied to it (hex), audited at start.
	Digest string `yaml:"-"`
	// Path is the file Load read: the console's editor writes to it.
	// Empty for a configuration with no file (veil demo).
	Path string `yaml:"-"`
	// MaxFramePixels refuses a camera picture larger than this (width x
	// height) before it is allocated: a forged stream header cannot make
	// veil allocate gigabytes. It defaults to 8847360 (4096x2160).
	MaxFramePixels int `yaml:"max_frame_pixels"`
}

// Placement is this box's part in its site's group. Every box of a site
// has the same cameras list; each serves the cameras the group gives it.
type Placement struct {
	// Box names this box among its site's (letters, digits, _ - .).
	// Setting it turns placement on; $VEIL_BOX overrides it, so that one
	// file serves every box of a site.
	Box string `yaml:"box"`
	// Capacity is how many cores this box gives its cameras; cameras are
	// placed so that each box carries the same share of its capacity. It
	// defaults to the number of CPUs.
	Capacity float64 `yaml:"capacity"`
	// Console is this box's console address (https://host:port/), shown by
	// the other boxes' consoles beside the cameras it serves. Optional.
	Console string `yaml:"console"`
	// SessionTimeout is how long a box may be silent before the others
	// take its cameras: 6s by default, the least a Kafka broker allows
	// unless its group.min.session.timeout.ms is lowered.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// Handover is how long a box waits before starting a camera it is
	// newly given, so that the box giving it up has stopped it and
	// flushed its last count window first: 3s by default.
	Handover time.Duration `yaml:"handover"`
}

// On reports whether the box takes part in placement.
func (p *Placement) On() bool { return p.Box != "" }

// Metrics is where /metrics and the status page are served.
type Metrics struct {
	// Listen serves /metrics, the status page (/) and /api/status. It
	// defaults to 127.0.0.1:9108. Off loopback they say which cameras
	// exist, who watches and how many logins failed, so an address other
	// than loopback needs BearerToken, and TLS unless Insecure.
	Listen string `yaml:"listen"`
	// BearerToken, when set, must come with every request as
	// "Authorization: Bearer <token>" (Prometheus:
	// authorization.credentials_file). $VEIL_METRICS_TOKEN overrides it.
	BearerToken string `yaml:"bearer_token"`
	// BearerTokenFile reads BearerToken from a file (a compose or
	// Kubernetes secret), trailing newline dropped.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// TLS serves them over HTTPS with this certificate and key (reloaded
	// when the files change).
	TLS TLSFiles `yaml:"tls"`
	// Insecure allows plain HTTP off loopback (a closed network, such as
	// compose's own).
	Insecure bool `yaml:"insecure"`
}

func (m *Metrics) validate() error {
	if (m.TLS.Cert == "") != (m.TLS.Key == "") {
		return errors.New("metrics.tls: cert and key go together")
	}
	if m.TLS.SelfSigned {
		return errors.New("metrics.tls.self_signed: give cert and key (Prometheus must trust the certificate)")
	}
	if m.BearerTokenFile != "" {
		if m.BearerToken != "" {
			return errors.New("metrics.bearer_token_file: set bearer_token or bearer_token_file, not both")
		}
		b, err := os.ReadFile(m.BearerTokenFile)
		if err != nil {
			return fmt.Errorf("metrics.bearer_token_file: %s: %w", m.BearerTokenFile, UnwrapPathErr(err))
		}
		m.BearerToken = strings.TrimSpace(string(b))
	}
	if m.BearerToken != "" {
		if err := strongToken(m.BearerToken); err != nil {
			return fmt.Errorf("metrics.bearer_token: %w (or $VEIL_METRICS_TOKEN)", err)
		}
	}
	host, _, err := net.SplitHostPort(m.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %q is not host:port", m.Listen)
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	if m.BearerToken == "" {
		return fmt.Errorf("metrics.listen: %s is reachable from the network, and /metrics names cameras, viewers and failed logins: set metrics.bearer_token (or $VEIL_METRICS_TOKEN)", m.Listen)
	}
	if m.TLS.Cert == "" && !m.Insecure {
		return fmt.Errorf("metrics.listen: %s is reachable from the network: the bearer token would cross it in clear text; set metrics.tls (cert and key), or metrics.insecure: true on a network you trust", m.Listen)
	}
	return nil
}

// HTTP is the console's and WebRTC's listener.
type HTTP struct {
	// Listen serves WHIP (/whip/{camera}), the console (/, /login, ...,
	// /whep/{camera}) and the privacy notice (/privacy). It defaults to
	// 127.0.0.1:8080, and is only opened when a camera has whip: true or
	// the console is on (console.users, or a camera's view_token). An
	// address other than loopback needs TLS (passwords, session cookies
	// and bearer tokens in clear text can be read off the LAN), unless
	// Insecure.
	Listen string `yaml:"listen"`
	// TLS serves WHIP over HTTPS with this certificate and key (PEM files).
	TLS TLSFiles `yaml:"tls"`
	// Insecure allows plain HTTP on a non-loopback address (a closed
	// network you trust). It defaults to false.
	Insecure bool `yaml:"insecure"`
	// ICEIPs limits the addresses offered to WebRTC publishers.
	ICEIPs []string `yaml:"ice_ips"`
	// WHIPOrigins are the web origins (https://host[:port]) whose pages
	// may publish over WHIP from a browser (CORS). None by default: the
	// page veil serves itself needs none, and no other page open in a
	// browser on the LAN can reach WHIP.
	WHIPOrigins []string `yaml:"whip_origins"`
}

// TLSFiles are a server certificate and its key.
type TLSFiles struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// SelfSigned makes veil generate a certificate on first start (ECDSA
	// P-256, for this host's names and addresses, valid two years) and keep
	// it in Dir; its SHA-256 fingerprint is logged at every start so that
	// a browser's warning can be checked against it.
	SelfSigned bool `yaml:"self_signed"`
	// Dir keeps the generated certificate. It defaults to
	// ${recordings.dir}/tls, or ./veil-tls.
	Dir string `yaml:"dir"`
}

// On reports whether the listener serves HTTPS.
func (t TLSFiles) On() bool { return t.Cert != "" || t.SelfSigned }

// Exporter runs the Kafka → Prometheus exporter inside veil run.
type Exporter struct {
	// Enabled runs the exporter in this process too; needs kafka.brokers.
	Enabled bool `yaml:"enabled"`
	// GroupID is the consumer group. It defaults to veil-exporter.
	GroupID string `yaml:"group_id"`
	// SiteKeysDir holds every site's signing keys (SITE.key, or
	// SITE@TAG.key while a key is rotated): the exporter then applies only
	// events signed with a key of the site they name.
	SiteKeysDir string `yaml:"site_keys_dir"`
}

// Camera is one source and its counting setup. Exactly one of URL, File
// and WHIP is set.
type Camera struct {
	// ID names the camera in metrics, events and recordings.
	ID string `yaml:"id"`
	// URL is an RTSP camera to pull (rtsp://user:pass@host:554/path).
	URL string `yaml:"url"`
	// Transport is tcp (default), udp or auto.
	Transport string `yaml:"transport"`
	// TLS verifies an rtsps:// camera's certificate.
	TLS CameraTLS `yaml:"tls"`
	// File replays a video file as a camera: in a loop and in real time
	// unless Once or Fast.
	File string `yaml:"file"`
	// Once plays File once; veil run stops when every camera has ended.
	Once bool `yaml:"once"`
	// Fast decodes File as fast as it can instead of at its frame rate;
	// then no frame is ever dropped (a slow stage makes the file wait).
	Fast bool `yaml:"fast"`
	// WHIP accepts a WebRTC publisher at POST /whip/{id}.
	WHIP bool `yaml:"whip"`
	// Token is the WHIP bearer token; $VEIL_WHIP_TOKEN_{ID} overrides it.
	Token string `yaml:"token"`
	// ViewToken lets a machine (a video wall) watch the camera live over
	// WHEP without a console login; $VEIL_VIEW_TOKEN_{ID} overrides it.
	ViewToken string `yaml:"view_token"`
	// Cost is what serving the camera takes, in cores, for placement. A
	// box measures it while it serves the camera, and the measure is used
	// instead; until a box has, 0 (the default) takes it to cost as much
	// as the site's other cameras.
	Cost float64 `yaml:"cost"`
	// Counting is this camera's lines and zones and the counter's tuning
	// (window, hysteresis, min_area, max_age, min_hits, smooth), written
	// directly under the camera. Without lines or zones the camera is not
	// counted.
	Counting counter.Config `yaml:",inline"`
}

// CameraTLS is how an rtsps:// camera's certificate is checked. Without
// either key, against the system's roots.
type CameraTLS struct {
	// CA is a PEM file of the certificates to trust: a private CA, or the
	// camera's own self-signed certificate.
	CA string `yaml:"ca"`
	// InsecureSkipVerify accepts any certificate (warned at start): the
	// stream is encrypted but the camera is not authenticated.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Counted reports whether the camera has anything to count.
func (c *Camera) Counted() bool { return len(c.Counting.Lines)+len(c.Counting.Zones) > 0 }

// Kind names the camera's source: rtsp, file or whip.
func (c *Camera) Kind() string {
	switch {
	case c.WHIP:
		return "whip"
	case c.File != "":
		return "file"
	}
	return "rtsp"
}

// Default is the configuration with no file: no cameras, every other key
// at its default.
func Default() Config {
	var c Config
	c.Defaults()
	return c
}

// Load reads path strictly (an unknown key is an error naming its line),
// applies the environment and defaults, and validates.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, UnwrapPathErr(err))
	}
	c, err := Parse(path, b)
	c.Path = path
	return c, err
}

// Parse is Load after reading the file; path only names it in errors.
func Parse(path string, b []byte) (Config, error) {
	var c Config
	if err := DecodeStrict(path, b, &c); err != nil {
		return c, err
	}
	c.Digest = DigestOf(b, ApplyEnv(&c, os.Getenv))
	c.Defaults()
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// DigestOf is the SHA-256 of the file and of the environment overrides
// applied to it: a changed token or broker list changes the digest the
// audit log records, as an edit of the file does. Each override enters as
// its own hash, the values never as they are.
func DigestOf(file []byte, overrides []string) string {
	h := sha256.New()
	h.Write(file)
	for _, o := range overrides {
		v := sha256.Sum256([]byte(o))
		h.Write([]byte("\x00env\x00"))
		h.Write(v[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DecodeStrict decodes YAML into v, refusing unknown keys (the error names
// the line); an empty document leaves v as it is.
func DecodeStrict(path string, b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// LoadCounting reads a counting file (lines, zones, tuning: the keys a
// camera takes for counting) strictly, for veil count and veil demo.
func LoadCounting(path string) (counter.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return counter.Config{}, fmt.Errorf("config %s: %w", path, UnwrapPathErr(err))
	}
	return ParseCounting(path, b)
}

// ParseCounting is LoadCounting after reading the file.
func ParseCounting(path string, b []byte) (counter.Config, error) {
	var cfg counter.Config
	if err := DecodeStrict(path, b, &cfg); err != nil {
		return cfg, err
	}
	cfg.Defaults()
	if err := cfg.Validate("counter"); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Defaults fills unset keys with their documented defaults.
func (c *Config) Defaults() {
	if c.Metrics.Listen == "" {
		c.Metrics.Listen = "127.0.0.1:9108"
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:8080"
	}
	for i := range c.Cameras {
		if c.Cameras[i].URL != "" && c.Cameras[i].Transport == "" {
			c.Cameras[i].Transport = "tcp"
		}
		c.Cameras[i].Counting.Defaults()
	}
	c.Recordings.Defaults()
	c.Blur.Defaults()
	c.Detector.Defaults()
	c.Kafka.Defaults()
	spool, tlsDir, audit := dataDirs(c.Recordings.Dir)
	if c.SpoolDir == "" {
		c.SpoolDir = spool
	}
	if c.Exporter.GroupID == "" {
		c.Exporter.GroupID = "veil-exporter"
	}
	if c.MaxFramePixels == 0 {
		c.MaxFramePixels = 4096 * 2160
	}
	if c.HTTP.TLS.Dir == "" {
		c.HTTP.TLS.Dir = tlsDir
	}
	c.Console.Defaults(audit)
	if c.Placement.On() {
		if c.Placement.Capacity == 0 {
			c.Placement.Capacity = float64(runtime.NumCPU())
		}
		if c.Placement.SessionTimeout == 0 {
			c.Placement.SessionTimeout = 6 * time.Second
		}
		if c.Placement.Handover == 0 {
			c.Placement.Handover = 3 * time.Second
		}
	}
}

// dataDirs is where the spool, the console's TLS keys and its audit log go
// when they are not configured: the spool and the keys under
// recordings.dir, if there is one; the audit log beside it
// (${recordings.dir}-audit), so that no recording's retention or disk use
// is ever counted with it.
func dataDirs(recordings string) (spool, tlsDir, audit string) {
	if recordings == "" {
		return "veil-spool", "veil-tls", "veil-audit"
	}
	return filepath.Join(recordings, "spool"), filepath.Join(recordings, "tls"), filepath.Clean(recordings) + "-audit"
}

// SetRecordingsDir moves recordings.dir after Defaults (a command's flag),
// and with it the directories Defaults put under it; those configured on
// their own stay where they are.
func (c *Config) SetRecordingsDir(dir string) {
	spool, tlsDir, audit := dataDirs(c.Recordings.Dir)
	c.Recordings.Dir = dir
	nspool, ntls, naudit := dataDirs(dir)
	for _, d := range []struct {
		field    *string
		was, now string
	}{
		{&c.SpoolDir, spool, nspool}, {&c.HTTP.TLS.Dir, tlsDir, ntls}, {&c.Console.Audit.Dir, audit, naudit},
	} {
		if *d.field == d.was {
			*d.field = d.now
		}
	}
}

// ConsoleOn reports whether http.listen serves the console: users can log
// in, or a camera has a view token.
func (c *Config) ConsoleOn() bool {
	if len(c.Console.Users) > 0 || c.Console.UsersFile != "" {
		return true
	}
	for _, cam := range c.Cameras {
		if cam.ViewToken != "" {
			return true
		}
	}
	return false
}

// Validate names the first key that is wrong.
func (c *Config) Validate() error {
	if len(c.Cameras) == 0 {
		return errors.New("cameras: at least one camera is required")
	}
	seen := map[string]bool{}
	for i := range c.Cameras {
		if err := c.ValidateCamera(i); err != nil {
			return err
		}
		if seen[c.Cameras[i].ID] {
			return fmt.Errorf("cameras[%d].id: %q is used twice", i, c.Cameras[i].ID)
		}
		seen[c.Cameras[i].ID] = true
	}
	if err := c.Metrics.validate(); err != nil {
		return err
	}
	if err := c.HTTP.validate(c.hasWHIP() || c.ConsoleOn()); err != nil {
		return err
	}
	if err := c.Console.Validate("console"); err != nil {
		return err
	}
	if c.ConsoleOn() {
		if err := c.Console.ValidateNotice("console"); err != nil {
			return err
		}
	}
	if c.MaxFramePixels < 320*240 || c.MaxFramePixels > 7680*4320 {
		return fmt.Errorf("max_frame_pixels: %d is outside [76800 (320x240), 33177600 (7680x4320)]", c.MaxFramePixels)
	}
	if err := c.Recordings.Validate("recordings"); err != nil {
		return err
	}
	if err := c.Blur.Validate("blur"); err != nil {
		return err
	}
	if err := c.Detector.Validate("detector"); err != nil {
		return err
	}
	if len(c.Kafka.Brokers) > 0 {
		if err := c.Kafka.Validate("kafka"); err != nil {
			return err
		}
	} else if c.Exporter.Enabled {
		return errors.New("exporter.enabled: needs kafka.brokers")
	}
	if err := c.validateSite(); err != nil {
		return err
	}
	return c.validatePlacement()
}

// ValidateCamera checks cameras[i] as Validate does; the error names its
// key.
func (c *Config) ValidateCamera(i int) error {
	return c.Cameras[i].validate(fmt.Sprintf("cameras[%d]", i))
}

func (c *Config) validatePlacement() error {
	p := &c.Placement
	if !p.On() {
		return nil
	}
	if err := footfall.ValidID(p.Box); err != nil {
		return fmt.Errorf("placement.box: %w", err)
	}
	switch {
	case c.Site == "":
		return errors.New("placement.box: needs site: the site's boxes form one group")
	case len(c.Kafka.Brokers) == 0:
		return errors.New("placement.box: needs kafka.brokers: the group's coordinator is a Kafka broker")
	case p.Capacity < 0:
		return fmt.Errorf("placement.capacity: %v is negative", p.Capacity)
	case p.SessionTimeout < 6*time.Second || p.SessionTimeout > 5*time.Minute:
		return fmt.Errorf("placement.session_timeout: %s is outside [6s, 5m] (a broker refuses less than its group.min.session.timeout.ms, 6s by default)", p.SessionTimeout)
	case p.Handover < 0 || p.Handover > time.Minute:
		return fmt.Errorf("placement.handover: %s is outside [0, 1m]", p.Handover)
	}
	if p.Console != "" {
		if u, err := url.Parse(p.Console); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("placement.console: %q is not an http(s) address", p.Console)
		}
	}
	for i, cam := range c.Cameras {
		switch {
		case cam.WHIP:
			return fmt.Errorf("cameras[%d].whip: a WHIP camera publishes to one box; it cannot move with placement", i)
		case cam.Once:
			return fmt.Errorf("cameras[%d].once: a file played once cannot move with placement", i)
		}
	}
	return nil
}

func (c *Config) validateSite() error {
	signed := c.SiteKeyFile != "" || c.SiteKey != ""
	switch {
	case c.Site != "":
		if err := footfall.ValidID(c.Site); err != nil {
			return fmt.Errorf("site: %w", err)
		}
	case signed:
		return errors.New("site: required with site_key_file (or $VEIL_SITE_KEY): a key signs one site's events")
	}
	if signed && len(c.Kafka.Brokers) == 0 {
		return errors.New("site_key_file: signs events sent to Kafka, and kafka.brokers is not set")
	}
	if c.SiteKey != "" {
		if _, err := signing.ParseKey(c.SiteKey); err != nil {
			return fmt.Errorf("site_key_file ($VEIL_SITE_KEY): %w", err)
		}
	}
	return nil
}

// SigningKey loads the site's key: nil when there is none.
func (c *Config) SigningKey() (signing.Key, error) {
	switch {
	case c.SiteKey != "":
		return signing.ParseKey(c.SiteKey)
	case c.SiteKeyFile != "":
		k, err := signing.LoadKey(c.SiteKeyFile)
		if err != nil {
			return nil, fmt.Errorf("site_key_file: %w", UnwrapPathErr(err))
		}
		return k, nil
	}
	return nil, nil
}

func (cam *Camera) validate(key string) error {
	if cam.Cost < 0 || cam.Cost > 1024 {
		return fmt.Errorf("%s.cost: %v is outside [0, 1024] cores", key, cam.Cost)
	}
	if err := footfall.ValidID(cam.ID); err != nil {
		return fmt.Errorf("%s.id: %w", key, err)
	}
	n := 0
	for _, set := range []bool{cam.URL != "", cam.File != "", cam.WHIP} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%s: set exactly one of url, file and whip", key)
	}
	if cam.WHIP {
		if err := strongToken(cam.Token); err != nil {
			return fmt.Errorf("%s.token: a WHIP camera needs a bearer token: %w (or $%s)", key, err, WHIPTokenEnv(cam.ID))
		}
	}
	if cam.URL != "" && !strings.HasPrefix(cam.URL, "rtsp://") && !strings.HasPrefix(cam.URL, "rtsps://") {
		return fmt.Errorf("%s.url: %s is not an rtsp:// URL", key, redact(cam.URL))
	}
	if (cam.TLS != CameraTLS{}) && !strings.HasPrefix(cam.URL, "rtsps://") {
		return fmt.Errorf("%s.tls: only an rtsps:// camera has tls", key)
	}
	if cam.TLS.CA != "" && cam.TLS.InsecureSkipVerify {
		return fmt.Errorf("%s.tls: set ca or insecure_skip_verify, not both", key)
	}
	if cam.TLS.CA != "" {
		b, err := os.ReadFile(cam.TLS.CA)
		if err != nil {
			return fmt.Errorf("%s.tls.ca: %s: %w", key, cam.TLS.CA, UnwrapPathErr(err))
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return fmt.Errorf("%s.tls.ca: %s holds no PEM certificate", key, cam.TLS.CA)
		}
	}
	if cam.ViewToken != "" {
		if err := strongToken(cam.ViewToken); err != nil {
			return fmt.Errorf("%s.view_token: %w (or $%s)", key, err, ViewTokenEnv(cam.ID))
		}
	}
	if cam.URL == "" && cam.Transport != "" {
		return fmt.Errorf("%s.transport: only an RTSP camera (url) has a transport", key)
	}
	switch cam.Transport {
	case "", "tcp", "udp", "auto":
	default:
		return fmt.Errorf("%s.transport: %q (want tcp, udp or auto)", key, cam.Transport)
	}
	if cam.File == "" && (cam.Once || cam.Fast) {
		return fmt.Errorf("%s.once: once and fast apply to a file camera only", key)
	}
	return cam.Counting.Validate(key)
}

// strongToken refuses a bearer token a guess could find: shorter than 16
// characters, made of few distinct characters (aaaa…, 1212…), or a
// placeholder from the documentation. `openssl rand -hex 16` makes a good one.
func strongToken(t string) error {
	if len(t) < 16 {
		return fmt.Errorf("%d characters; use at least 16 random ones (openssl rand -hex 16)", len(t))
	}
	lower := strings.ToLower(t)
	for _, p := range []string{"change-me", "changeme", "replace-me", "example", "placeholder", "password", "secret-token"} {
		if strings.Contains(lower, p) {
			return fmt.Errorf("it holds %q, a placeholder: use a random one (openssl rand -hex 16)", p)
		}
	}
	distinct := map[rune]bool{}
	for _, r := range t {
		distinct[r] = true
	}
	if len(distinct) < 8 {
		return fmt.Errorf("only %d distinct characters: use a random one (openssl rand -hex 16)", len(distinct))
	}
	return nil
}

func (c *Config) hasWHIP() bool {
	for _, cam := range c.Cameras {
		if cam.WHIP {
			return true
		}
	}
	return false
}

func (h *HTTP) validate(used bool) error {
	if (h.TLS.Cert == "") != (h.TLS.Key == "") {
		return errors.New("http.tls: cert and key go together")
	}
	if h.TLS.SelfSigned && h.TLS.Cert != "" {
		return errors.New("http.tls.self_signed: set cert and key, or self_signed, not both")
	}
	host, _, err := net.SplitHostPort(h.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %q is not host:port", h.Listen)
	}
	for i, o := range h.WHIPOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || o == "*" {
			return fmt.Errorf("http.whip_origins[%d]: %q is not an origin (https://host[:port])", i, o)
		}
		h.WHIPOrigins[i] = u.Scheme + "://" + u.Host // as browsers send it
	}
	if !used || h.TLS.On() || h.Insecure {
		return nil
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("http.listen: %s is reachable from the network: passwords, session cookies and bearer tokens would cross it in clear text; set http.tls (cert and key, or self_signed: true), or http.insecure: true on a network you trust", h.Listen)
}

// UnwrapPathErr drops an *os.PathError's wrapper: the caller names the
// file by its key or its role, and the error keeps only the cause.
func UnwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
