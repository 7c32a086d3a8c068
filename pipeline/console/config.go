// Package console is the guard's web console on http.listen: login, a
// camera grid with live obscured video (WHEP), each camera's recordings
// with playback and download, today's counts, a privacy notice for the
// people filmed, and an append-only audit log of who looked at what.
package console

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Config is the console's part of veil.yaml (the key console).
type Config struct {
	// Users may log in. Without users the console serves only /privacy
	// (and WHEP to view tokens).
	Users []User `yaml:"users"`
	// UsersFile holds the users an admin adds, disables and resets on the
	// admin page (YAML: a list like users), rewritten atomically on each
	// change. Those in Users stay as veil.yaml says; names are unique
	// across both. Empty: users are managed in veil.yaml only.
	UsersFile string `yaml:"users_file"`
	// SessionTTL is how long a login lasts. It defaults to 12h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// MaxViewersPerCamera and MaxViewers bound live viewers (default 10
	// and 40).
	MaxViewersPerCamera int `yaml:"max_viewers_per_camera"`
	MaxViewers          int `yaml:"max_viewers"`
	// MaxViewersPerUser bounds the live views one user (or one camera's
	// view token) holds at once. It defaults to 4.
	MaxViewersPerUser int `yaml:"max_viewers_per_user"`
	// Audit is the audit log.
	Audit AuditConfig `yaml:"audit"`
	// Privacy fills the privacy notice.
	Privacy Privacy `yaml:"privacy"`
}

// User is a console login.
type User struct {
	Name string `yaml:"name"`
	// PasswordHash is a bcrypt hash (`veil passwd` prints one).
	PasswordHash string `yaml:"password_hash"`
	// Role is viewer (live view, recordings, counts) or admin (also the
	// users and the audit log).
	Role string `yaml:"role"`
	// Disabled users cannot log in (an admin disabled them).
	Disabled bool `yaml:"disabled,omitempty"`
}

// Roles.
const (
	RoleViewer = "viewer"
	RoleAdmin  = "admin"
)

// AuditConfig is where the audit log goes and how long it is kept.
type AuditConfig struct {
	// Dir holds the log's JSON-lines files, named by day. It defaults to
	// ${recordings.dir}-audit, beside the recordings, or ./veil-audit:
	// never inside the recordings, whose retention it must not share.
	Dir string `yaml:"dir"`
	// Keep is how long a day's files are kept. It defaults to 2160h (90 days).
	Keep time.Duration `yaml:"keep"`
	// MaxBytes bounds the log on disk: past it the oldest files are
	// deleted (logged, and counted in veil_audit_files_deleted_total). It
	// defaults to 256 MiB and must be at least 1 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
}

// Privacy is what the notice says about the operator. PIPL asks the
// notice to name the personal information handler (个人信息处理者) and how
// to reach them, so Operator and Contact are required when the console
// is on (veil demo fills them in).
type Privacy struct {
	// Operator is who runs the cameras (the personal information handler).
	Operator string `yaml:"operator"`
	// Contact is whom the people filmed can ask (an address, a phone).
	Contact string `yaml:"contact"`
	// Purpose is why the cameras are there, in English, and PurposeZH in
	// Chinese. They default to security of the premises and anonymous
	// visitor counts.
	Purpose   string `yaml:"purpose"`
	PurposeZH string `yaml:"purpose_zh"`
	// CountsKeep is how long the operator keeps the counts (their
	// statistics system's retention; veil keeps none itself). Zero: the
	// notice says they are kept as statistics, without a period.
	CountsKeep time.Duration `yaml:"counts_keep"`
	// Updated is the notice's date (YYYY-MM-DD), shown on it.
	Updated string `yaml:"updated"`
}

// Defaults fills unset keys; auditDir is the default audit directory.
func (c *Config) Defaults(auditDir string) {
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.MaxViewersPerCamera == 0 {
		c.MaxViewersPerCamera = 10
	}
	if c.MaxViewers == 0 {
		c.MaxViewers = 40
	}
	if c.MaxViewersPerUser == 0 {
		c.MaxViewersPerUser = 4
	}
	if c.Audit.Dir == "" {
		c.Audit.Dir = auditDir
	}
	if c.Audit.Keep == 0 {
		c.Audit.Keep = 90 * 24 * time.Hour
	}
	if c.Audit.MaxBytes == 0 {
		c.Audit.MaxBytes = 256 << 20
	}
	if c.Privacy.Purpose == "" {
		c.Privacy.Purpose = "security of the premises, and anonymous counts of visitors"
	}
	if c.Privacy.PurposeZH == "" {
		c.Privacy.PurposeZH = "保障场所安全，以及匿名统计访客人数"
	}
}

// ValidateNotice checks what the privacy notice must say: who handles the
// personal information and how to reach them. Called when the console is
// on.
func (c *Config) ValidateNotice(prefix string) error {
	if strings.TrimSpace(c.Privacy.Operator) == "" {
		return fmt.Errorf("%s.privacy.operator: name the personal information handler (个人信息处理者) the privacy notice presents", prefix)
	}
	if strings.TrimSpace(c.Privacy.Contact) == "" {
		return fmt.Errorf("%s.privacy.contact: say how people can reach %s (an address, a phone) to use their rights", prefix, c.Privacy.Operator)
	}
	return nil
}

// Validate names the key of the first error, under prefix.
func (c *Config) Validate(prefix string) error {
	if err := validateUsers(c.Users, prefix+".users", map[string]bool{}); err != nil {
		return err
	}
	if c.UsersFile != "" {
		if _, err := readUsersFile(c.UsersFile, c.Users); err != nil {
			return fmt.Errorf("%s.users_file: %w", prefix, err)
		}
	}
	return c.validateRest(prefix)
}

// validateUsers checks users (at key) and that no name is in seen.
func validateUsers(users []User, key string, seen map[string]bool) error {
	for i, u := range users {
		key := fmt.Sprintf("%s[%d]", key, i)
		if u.Name == "" || len(u.Name) > 64 {
			return fmt.Errorf("%s.name: give a name of 1 to 64 characters", key)
		}
		if seen[u.Name] {
			return fmt.Errorf("%s.name: %q is listed twice", key, u.Name)
		}
		seen[u.Name] = true
		cost, err := bcrypt.Cost([]byte(u.PasswordHash))
		if err != nil {
			return fmt.Errorf("%s.password_hash: not a bcrypt hash (make one with `veil passwd`)", key)
		}
		if cost != passwordCost {
			// A cheaper hash is cheaper to crack; any other cost than the
			// unknown-name check's lets a login's time tell real names.
			return fmt.Errorf("%s.password_hash: bcrypt cost %d; veil needs cost %d (make one with `veil passwd`)", key, cost, passwordCost)
		}
		if u.Role != RoleViewer && u.Role != RoleAdmin {
			return fmt.Errorf("%s.role: %q (want viewer or admin)", key, u.Role)
		}
	}
	return nil
}

func (c *Config) validateRest(prefix string) error {
	if c.SessionTTL < time.Minute || c.SessionTTL > 7*24*time.Hour {
		return fmt.Errorf("%s.session_ttl: %v is outside [1m, 168h]", prefix, c.SessionTTL)
	}
	if c.MaxViewersPerUser < 1 {
		return fmt.Errorf("%s.max_viewers_per_user: %d is less than 1", prefix, c.MaxViewersPerUser)
	}
	if c.MaxViewersPerCamera < 1 || c.MaxViewers < 1 {
		return fmt.Errorf("%s.max_viewers_per_camera: viewer limits must be at least 1", prefix)
	}
	if c.Audit.Keep < 24*time.Hour {
		return fmt.Errorf("%s.audit.keep: %v is less than a day", prefix, c.Audit.Keep)
	}
	if c.Privacy.Updated != "" {
		if _, err := time.Parse("2006-01-02", c.Privacy.Updated); err != nil {
			return fmt.Errorf("%s.privacy.updated: %q is not a date (YYYY-MM-DD)", prefix, c.Privacy.Updated)
		}
	}
	if c.Privacy.CountsKeep < 0 {
		return fmt.Errorf("%s.privacy.counts_keep: %v is negative", prefix, c.Privacy.CountsKeep)
	}
	if c.Audit.MaxBytes < 1<<20 {
		return fmt.Errorf("%s.audit.max_bytes: %d is under 1 MiB", prefix, c.Audit.MaxBytes)
	}
	return nil
}

// passwordCost is the bcrypt cost of the hashes `veil passwd` makes.
const passwordCost = 12

// HashPassword is the bcrypt hash of a password, for users[].password_hash.
func HashPassword(password string) (string, error) {
	if len(password) < 10 {
		return "", errors.New("use a password of at least 10 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), passwordCost)
	return string(h), err
}

// Passwd reads a password (one line) from in and prints its bcrypt hash
// for users[].password_hash (`veil passwd`).
func Passwd(in io.Reader, out io.Writer) error {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	h, err := HashPassword(strings.TrimRight(line, "\r\n"))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, h)
	return err
}

// DemoUser is an admin named demo with a fresh random password, for
// veil demo (which prints it).
func DemoUser() (User, string, error) {
	b := make([]byte, 9)
	if _, err := rand.Read(b); err != nil {
		return User{}, "", err
	}
	pw := base64.RawURLEncoding.EncodeToString(b)
	h, err := bcrypt.GenerateFromPassword([]byte(pw), passwordCost)
	return User{Name: "demo", PasswordHash: string(h), Role: RoleAdmin}, pw, err
}
