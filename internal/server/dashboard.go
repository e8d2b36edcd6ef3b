package server

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"rung.dev/rung/internal/auth"
)

// The web dashboard (DESIGN §7) at /: the topology, tiers and placements,
// rendered on the server from the same plan and access rules as the API.
// No script runs in the page; it refreshes itself.
//
// A browser can't send a bearer header on navigation, so signing in
// starts a session: a random ID in a cookie (HttpOnly, SameSite=Strict)
// that names the token in this process's memory, for sessionTTL. The
// token itself never goes to the browser (a cookie travels to every port
// of the host), the session only opens the dashboard's read-only pages,
// the API ignores cookies, and every page checks the token again, so a
// revoked token ends its sessions.

//go:embed dashboard/*.html dashboard/style.css
var dashboardFS embed.FS

var dashboardTmpl = template.Must(template.New("").Funcs(uiFuncs).ParseFS(dashboardFS, "dashboard/*.html"))

const (
	sessionCookie = "rung_session"
	// dashboardRefresh is how often the page reloads itself, in seconds.
	dashboardRefresh = 10
	// maxLoginBody bounds the sign-in form.
	maxLoginBody = 4 << 10
	// sessionTTL is how long a dashboard sign-in lasts.
	sessionTTL = 8 * time.Hour
	// dashboardEvents is how many recent events the page lists.
	dashboardEvents = 15
	// maxSessions bounds the sign-ins kept in memory, maxSessionsPerToken
	// those of one token.
	maxSessions         = 10000
	maxSessionsPerToken = 8
)

// uiSessions are the dashboard's sign-ins: session ID → token.
type uiSessions struct {
	mu sync.Mutex
	m  map[string]uiSession
}

// uiSession is one sign-in. csrf is a random value of its own that every
// form the signed-in pages post carries back, so a form can't be posted
// for the session from elsewhere even where the browser sends neither
// Sec-Fetch-Site nor Origin.
type uiSession struct {
	token, csrf string
	expires     time.Time
}

func randomID(random io.Reader) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// start records a session for token and returns its ID, or "" when too
// many live sessions exist.
func (u *uiSessions) start(random io.Reader, token string, now time.Time) (string, error) {
	id, err := randomID(random)
	if err != nil {
		return "", err
	}
	csrf, err := randomID(random)
	if err != nil {
		return "", err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]uiSession{}
	}
	if len(u.m) >= maxSessions {
		for k, v := range u.m {
			if !now.Before(v.expires) {
				delete(u.m, k)
			}
		}
		if len(u.m) >= maxSessions {
			return "", nil
		}
	}
	// One token holds at most maxSessionsPerToken: signing in again ends
	// its oldest, so no single token can use up every session.
	var mine []string
	for k, v := range u.m {
		if v.token == token {
			mine = append(mine, k)
		}
	}
	if len(mine) >= maxSessionsPerToken {
		slices.SortFunc(mine, func(a, b string) int { return u.m[a].expires.Compare(u.m[b].expires) })
		for _, k := range mine[:len(mine)-maxSessionsPerToken+1] {
			delete(u.m, k)
		}
	}
	u.m[id] = uiSession{token: token, csrf: csrf, expires: now.Add(sessionTTL)}
	return id, nil
}

// get returns session id while it lasts.
func (u *uiSessions) get(id string, now time.Time) (uiSession, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.m[id]
	if !ok {
		return uiSession{}, false
	}
	if !now.Before(s.expires) {
		delete(u.m, id)
		return uiSession{}, false
	}
	return s, true
}

func (u *uiSessions) end(id string) {
	u.mu.Lock()
	delete(u.m, id)
	u.mu.Unlock()
}

// uiHeaders are set on every dashboard response: nothing but the
// project's own stylesheet loads, no script runs, no frame may embed the
// page, and nothing is cached. Referrer-Policy is same-origin rather than
// no-referrer: under no-referrer browsers send "Origin: null" with the
// page's own forms, which no origin check can tell from a sandboxed
// attacker; same-origin still sends nothing to other sites.
func uiHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

func (s *Server) dashboardRoutes() {
	s.mux.Handle("GET /{$}", s.wrap("/", s.uiPage(s.overviewPage)))
	s.mux.Handle("GET /ui/topology", s.wrap("/ui/topology", s.uiPage(s.topologyPage)))
	s.mux.Handle("GET /ui/workloads/{tenant}/{name}", s.wrap("/ui/workloads", s.uiPage(s.workloadPage)))
	s.mux.Handle("GET /ui/nodes/{name}", s.wrap("/ui/nodes", s.uiPage(s.nodePage)))
	s.mux.Handle("GET /ui/search", s.wrap("/ui/search", s.uiPage(s.searchPage)))
	s.mux.Handle("GET /ui/volumes", s.wrap("/ui/volumes", s.uiPage(s.volumesPageHandler)))
	s.mux.Handle("GET /ui/style.css", s.wrap("/ui/style.css", func(w http.ResponseWriter, r *http.Request) error {
		uiHeaders(w)
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		b, err := dashboardFS.ReadFile("dashboard/style.css")
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}))
	s.mux.Handle("POST /ui/login", s.wrap("/ui/login", s.login))
	s.mux.Handle("POST /ui/logout", s.wrap("/ui/logout", s.logout))
}

// loginPage is the model of the sign-in page.
type loginPage struct {
	pageBase
	Error string
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, msg string) error {
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	return dashboardTmpl.ExecuteTemplate(w, "login", loginPage{pageBase: pageBase{Title: "Sign in"}, Error: msg})
}

// crossOrigin refuses a form posted from another site (login CSRF:
// signing a victim in as the attacker; signing them out). It reads
// Sec-Fetch-Site where the browser sends it, else Origin against Host; a
// client that sends neither (curl) is not a browser being abused.
var crossOrigin = http.NewCrossOriginProtection()

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if err := crossOrigin.Check(r); err != nil {
		return s.renderLogin(w, http.StatusForbidden, "sign-in refused: the form was posted from another site")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		return s.renderLogin(w, http.StatusBadRequest, "sign-in form too large or malformed")
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	p, err := s.lookupToken(r.Context(), token)
	if err != nil {
		if !errors.Is(err, auth.ErrBadToken) {
			return err
		}
		s.unauthenticated(clientAddr(r), "invalid") // summed up in the audit log
		return s.renderLogin(w, http.StatusUnauthorized, "that token is malformed, revoked or unknown")
	}
	if err := s.authorize(auth.WithPrincipal(r.Context(), p), auth.Get, auth.Object{Kind: auth.KindPlan}, ""); err != nil {
		return s.renderLogin(w, http.StatusForbidden, "this token may not view the plan (node tokens are for agents)")
	}
	id, err := s.sessions.start(s.random, token, s.now())
	if err != nil {
		return err
	}
	if id == "" {
		return s.renderLogin(w, http.StatusServiceUnavailable, "too many dashboard sessions; try again later")
	}
	setSessionCookie(w, r, id, int(sessionTTL/time.Second))
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// setSessionCookie sets the session cookie to id for maxAge seconds, or
// clears it (maxAge -1): HttpOnly and SameSite=Strict always.
func setSessionCookie(w http.ResponseWriter, r *http.Request, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// logout ends the session. Besides the origin check, the form must carry
// the session's own csrf value.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	if err := crossOrigin.Check(r); err != nil {
		return s.renderLogin(w, http.StatusForbidden, "sign-out refused: the form was posted from another site")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		return s.renderLogin(w, http.StatusBadRequest, "sign-out form too large or malformed")
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if sess, ok := s.sessions.get(c.Value, s.now()); ok {
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(sess.csrf)) != 1 {
				return s.renderLogin(w, http.StatusForbidden, "sign-out refused: the form lacks this session's token; sign out from the dashboard's own button")
			}
			s.sessions.end(c.Value)
		}
	}
	setSessionCookie(w, r, "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// uiHandler is a dashboard page for a signed-in principal: ctx carries
// the principal, base is filled in for the page's header.
type uiHandler func(ctx context.Context, w http.ResponseWriter, r *http.Request, base pageBase) error

// uiPage signs the request in from its session (or, for scripts, its
// Authorization header) and runs page, or shows the sign-in page. Every
// page checks the token again, so a revoked token ends its sessions.
func (s *Server) uiPage(page uiHandler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		token, csrf := "", ""
		if c, err := r.Cookie(sessionCookie); err == nil {
			if sess, ok := s.sessions.get(c.Value, s.now()); ok {
				token, csrf = sess.token, sess.csrf
			} else {
				setSessionCookie(w, r, "", -1)
				return s.renderLogin(w, http.StatusOK, "your session has ended; sign in again")
			}
		}
		if scheme, t, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			token, csrf = strings.TrimSpace(t), ""
		}
		if token == "" {
			return s.renderLogin(w, http.StatusOK, "")
		}
		p, err := s.lookupToken(ctx, token)
		if err != nil {
			if !errors.Is(err, auth.ErrBadToken) {
				return err
			}
			return s.renderLogin(w, http.StatusUnauthorized, "your session's token is no longer valid; sign in again")
		}
		ctx = auth.WithPrincipal(ctx, p)
		if err := s.authorize(ctx, auth.Get, auth.Object{Kind: auth.KindPlan}, ""); err != nil {
			return s.renderLogin(w, http.StatusForbidden, "this token may not view the plan (node tokens are for agents)")
		}
		base := pageBase{Who: describePrincipal(p), CSRF: csrf, Operator: p.Role == auth.Operator,
			Refresh: dashboardRefresh, Generated: s.now().UTC().Format(time.DateTime + " UTC")}
		return page(ctx, w, r, base)
	}
}

func describePrincipal(p auth.Principal) string {
	if p.Tenant != "" {
		return fmt.Sprintf("%s of %s", p.Role, p.Tenant)
	}
	return string(p.Role)
}
