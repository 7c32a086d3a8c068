package console

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/veilproject/veil/rtcconf"
)

// readUsersFile reads the users an admin manages (console.users_file); a
// missing file is no users yet. Names must not repeat, nor repeat those
// of veil.yaml (fixed).
func readUsersFile(path string, fixed []User) ([]User, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var users []User
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&users); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for _, u := range fixed {
		seen[u.Name] = true
	}
	if err := validateUsers(users, path, seen); err != nil {
		return nil, err
	}
	return users, nil
}

// writeUsersFile replaces the file with users: a temporary file, synced,
// then renamed over the old, so a crash leaves one or the other whole.
func writeUsersFile(path string, users []User) error {
	b, err := yaml.Marshal(users)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".users-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// userList is who may log in: veil.yaml's users, fixed, and the users
// file's, which admins change.
type userList struct {
	mu      sync.Mutex
	fixed   []User
	managed []User
	file    string
}

func (l *userList) all() []User {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append(slices.Clone(l.fixed), l.managed...)
}

// change applies f to a copy of the managed users, checks the result and
// writes it to the file; only then does it take effect.
func (l *userList) change(f func([]User) ([]User, error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == "" {
		return errors.New("users are managed in veil.yaml here: set console.users_file to manage them on this page")
	}
	next, err := f(slices.Clone(l.managed))
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, u := range l.fixed {
		seen[u.Name] = true
	}
	if err := validateUsers(next, "user", seen); err != nil {
		return err
	}
	if err := writeUsersFile(l.file, next); err != nil {
		return fmt.Errorf("writing %s: %w", l.file, err)
	}
	l.managed = next
	return nil
}

// userAction is what an admin does to a user on the admin page: add one,
// disable, enable or reset a password. Every change is audited; a
// disabled user's sessions and live views end at once.
func (c *Console) userAction(w http.ResponseWriter, r *http.Request, x *session) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	action, name, role, pw := r.PostForm.Get("action"), r.PostForm.Get("name"), r.PostForm.Get("role"), r.PostForm.Get("password")
	find := func(users []User) (int, error) {
		i := slices.IndexFunc(users, func(u User) bool { return u.Name == name })
		if i < 0 {
			return 0, fmt.Errorf("no user %q among those managed here", name)
		}
		return i, nil
	}
	var hash string
	if action == "add" || action == "reset" {
		h, err := HashPassword(pw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		hash = h
	}
	err := c.users.change(func(users []User) ([]User, error) {
		switch action {
		case "add":
			return append(users, User{Name: name, PasswordHash: hash, Role: role}), nil
		case "disable", "enable", "reset":
			i, err := find(users)
			if err != nil {
				return nil, err
			}
			switch action {
			case "disable":
				users[i].Disabled = true
			case "enable":
				users[i].Disabled = false
			default:
				users[i].PasswordHash = hash
			}
			return users, nil
		}
		return nil, fmt.Errorf("unknown action %q (want add, disable, enable or reset)", action)
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if action == "disable" || action == "reset" {
		c.endUser(name) // a reset password ends the sessions the old one opened
	}
	c.audit.Log(Event{Kind: AuditUserChanged, User: x.user, From: rtcconf.ClientIP(r), Detail: clip(action+" "+name+" "+role, maxDetailField)})
	http.Redirect(w, r, "/admin", http.StatusSeeOther)
}

// endUser ends every session and live view of user.
func (c *Console) endUser(user string) {
	for _, t := range c.sess.of(user) {
		c.sess.delete(t)
		c.whep.EndLogin(loginID(t))
	}
}
