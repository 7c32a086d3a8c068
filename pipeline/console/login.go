package console

import (
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/veilproject/veil/rtcconf"
)

// loginErrors are the messages /login?error= may show: fixed codes, so a
// link cannot put words on the console's page.
var loginErrors = map[string]string{
	"wrong":   "用户名或密码错误。 Wrong name or password.",
	"expired": "登录表单已过期，请重试。 The login form expired; please try again.",
}

// maxLoginBody bounds a login request: a name, a password and a token fit
// in far less, and nothing larger is read, parsed or logged.
const maxLoginBody = 4 << 10

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.renderLogin(w, http.StatusOK, loginErrors[r.URL.Query().Get("error")])
}

func (c *Console) renderLogin(w http.ResponseWriter, code int, msg string) {
	t := token()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: t, Path: "/login", HttpOnly: true, Secure: c.deps.TLS, SameSite: http.SameSiteStrictMode, MaxAge: 600})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := pages.ExecuteTemplate(w, "login.html", map[string]any{"CSRF": t, "Error": msg}); err != nil {
		c.log.Error("rendering", "page", "login.html", "err", err)
	}
}

// login checks a name and password. Before any password is checked the
// attempt is reserved with the limiter (per address and per name, or per
// browser for a browser that logged in as that name before) and takes one
// of the few password-check slots; a refusal writes one audit line per
// lockout, and a summary of the refusals when the lockout is over.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		http.Error(w, "a login is a form post (application/x-www-form-urlencoded)", http.StatusUnsupportedMediaType)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the login request is malformed or too large", http.StatusRequestEntityTooLarge)
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !tokenEq(r.PostForm.Get("csrf"), ck.Value) {
		c.renderLogin(w, http.StatusForbidden, loginErrors["expired"])
		return
	}
	name, ip := r.PostForm.Get("name"), rtcconf.ClientIP(r)
	keys := []string{"ip:" + ip, "user:" + clip(name, maxNameField)}
	if id := c.dev.id(r, name); id != "" {
		keys = []string{"device:" + id}
	}
	ok, why, suppressed := c.lim.reserve(keys...)
	for k, n := range suppressed {
		c.audit.Log(Event{Kind: AuditLoginFailed, User: name, From: ip, Detail: fmt.Sprintf("%d attempts refused while %s was locked out", n, k)})
	}
	if !ok {
		if why.first {
			c.audit.Log(Event{Kind: AuditLoginFailed, User: name, From: ip, Detail: "locked out until " + why.until.UTC().Format(time.RFC3339) + " (" + why.key + "); further attempts summarised when it ends"})
		}
		wait := max(time.Until(why.until).Round(time.Second), time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())))
		c.renderLogin(w, http.StatusTooManyRequests, "登录失败次数过多，请在 "+why.until.Local().Format("15:04:05")+" 之后再试。 Too many failed logins. Try again after "+why.until.Local().Format("15:04:05")+".")
		return
	}
	if len(name) > maxNameField {
		// No user has such a name (Validate): a failure, without the
		// cost of a password check.
		c.lim.settle(true, keys...)
		c.audit.Log(Event{Kind: AuditLoginFailed, User: name, From: ip, Detail: "name too long"})
		http.Redirect(w, r, "/login?error=wrong", http.StatusSeeOther)
		return
	}
	if !c.checks.try() {
		c.lim.release(keys...)
		w.Header().Set("Retry-After", "1")
		c.renderLogin(w, http.StatusServiceUnavailable, "系统繁忙，请稍后再试。 The console is busy; try again in a moment.")
		return
	}
	u := check(c.users.all(), name, r.PostForm.Get("password"))
	c.checks.done()
	c.lim.settle(u == nil, keys...)
	if u == nil {
		c.audit.Log(Event{Kind: AuditLoginFailed, User: name, From: ip})
		http.Redirect(w, r, "/login?error=wrong", http.StatusSeeOther)
		return
	}
	if err := c.audit.Log(Event{Kind: AuditLogin, User: u.Name, From: ip}); err != nil {
		// Nobody looks at video unaudited.
		c.log.Error("audit log unwritable: login refused", "err", err)
		http.Error(w, "the audit log cannot be written; ask the administrator", http.StatusServiceUnavailable)
		return
	}
	t, _ := c.sess.create(u.Name, u.Role)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: t, Path: "/", HttpOnly: true, Secure: c.deps.TLS, SameSite: http.SameSiteStrictMode, MaxAge: int(c.cfg.SessionTTL.Seconds())})
	http.SetCookie(w, &http.Cookie{Name: deviceCookie, Value: c.dev.issue(u.Name), Path: "/login", HttpOnly: true, Secure: c.deps.TLS, SameSite: http.SameSiteStrictMode, MaxAge: 180 * 24 * 3600})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
