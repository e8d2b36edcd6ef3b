package server

import (
	"cmp"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
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

//go:embed dashboard/page.html dashboard/style.css
var dashboardFS embed.FS

var dashboardTmpl = template.Must(template.ParseFS(dashboardFS, "dashboard/page.html"))

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

type uiSession struct {
	token   string
	expires time.Time
}

// start records a session for token and returns its ID, or "" when too
// many live sessions exist.
func (u *uiSessions) start(random io.Reader, token string, now time.Time) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(b)
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
	u.m[id] = uiSession{token: token, expires: now.Add(sessionTTL)}
	return id, nil
}

// token returns the token of session id while it lasts.
func (u *uiSessions) token(id string, now time.Time) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.m[id]
	if !ok {
		return "", false
	}
	if !now.Before(s.expires) {
		delete(u.m, id)
		return "", false
	}
	return s.token, true
}

func (u *uiSessions) end(id string) {
	u.mu.Lock()
	delete(u.m, id)
	u.mu.Unlock()
}

// uiHeaders are set on every dashboard response: nothing but the
// project's own stylesheet loads, no frame may embed the page, and nothing
// is cached.
func uiHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func (s *Server) dashboardRoutes() {
	s.mux.Handle("GET /{$}", s.wrap("/", s.dashboard))
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
	Who, Error string
	Refresh    int
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, msg string) error {
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	return dashboardTmpl.ExecuteTemplate(w, "login", loginPage{Error: msg})
}

// sameOrigin refuses a form posted from another site (login CSRF: signing
// a victim in as the attacker). Browsers send Origin with every POST; a
// client that sends none (curl) is not a browser being abused.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if !sameOrigin(r) {
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

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	if !sameOrigin(r) {
		return s.renderLogin(w, http.StatusForbidden, "sign-out refused: the form was posted from another site")
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.end(c.Value)
	}
	setSessionCookie(w, r, "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// dashboard renders the plan for the signed-in principal, or the sign-in
// page. The token comes from the session or, for scripts, the
// Authorization header.
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	token := ""
	if c, err := r.Cookie(sessionCookie); err == nil {
		if t, ok := s.sessions.token(c.Value, s.now()); ok {
			token = t
		} else {
			setSessionCookie(w, r, "", -1)
			return s.renderLogin(w, http.StatusOK, "your session has ended; sign in again")
		}
	}
	if scheme, t, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		token = strings.TrimSpace(t)
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
	pl, err := s.planner.current(ctx)
	if err != nil {
		return err
	}
	var view dashboardView
	if p.Role == auth.Operator {
		view = operatorView(pl, s.nodes.status(topologyNodes(pl.set)))
	} else {
		view = tenantDashboard(tenantView(pl.result, p.Tenant, pl.tenants))
	}
	if evs, err := s.tailEvents(ctx, dashboardEvents, visibleTo(p)); err == nil {
		view.Events = evs.Events
		slices.Reverse(view.Events) // newest first
	}
	view.Who = describePrincipal(p)
	view.Refresh = dashboardRefresh
	view.Generated = s.now().UTC().Format(time.DateTime + " UTC")
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return dashboardTmpl.ExecuteTemplate(w, "dashboard", view)
}

func describePrincipal(p auth.Principal) string {
	if p.Tenant != "" {
		return fmt.Sprintf("%s of %s", p.Role, p.Tenant)
	}
	return string(p.Role)
}

// dashboardView is what the page shows.
type dashboardView struct {
	Who, Generated string
	Refresh        int
	Operator       bool
	Placed         int
	Tiers          []tierCount
	Datacenters    []dcView
	Placements     []scheduler.Placement
	Unplaced       []scheduler.Unplaced
	Problems       []string
	// Events are the latest audit events the principal may see, newest
	// first (as `rung get events` shows them).
	Events []wire.Event
}

type tierCount struct {
	Tier  string
	Count int
}

type dcView struct {
	Name  string
	Racks []rackView
}

type rackView struct {
	Name  string
	Hosts []hostView
}

// hostView is a node: a physical host with its VM nodes, or a VM node.
type hostView struct {
	// Domains are the host's other failure domains ("pdu p1 · switch s1").
	Name, State, Runtimes, Tenant, Domains string
	Replicas                               []replicaView
	VMs                                    []hostView
}

type replicaView struct {
	Label, Tier, Reason string
}

func tierCounts(res *scheduler.Result) []tierCount {
	n := map[string]int{}
	for _, p := range res.Placements {
		n[p.Tier]++
	}
	var out []tierCount
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		if c := n[t.String()]; c > 0 {
			out = append(out, tierCount{Tier: t.String(), Count: c})
		}
	}
	return out
}

func tenantDashboard(res *scheduler.Result) dashboardView {
	return dashboardView{Placed: len(res.Placements), Tiers: tierCounts(res), Placements: res.Placements, Unplaced: res.Unplaced}
}

// operatorView lays out every node of pl by datacenter and rack, VM nodes
// under their host, each with its liveness, the tiers it offered the
// scheduler (what its manifest lists and its agent detects) and its
// replicas.
func operatorView(pl plan, statuses []wire.NodeStatus) dashboardView {
	set, res := pl.set, pl.result
	view := dashboardView{Operator: true, Placed: len(res.Placements), Tiers: tierCounts(res), Unplaced: res.Unplaced, Problems: res.Problems}
	state := map[string]string{}
	for _, st := range statuses {
		state[st.Name] = st.State
		// A node no agent of its own reports on is run by rung up's own
		// agent when that stands for every node.
		if st.State == wire.NodeUnknown && pl.local {
			state[st.Name] = "local"
		}
	}
	byNode := map[string][]replicaView{}
	for _, p := range res.Placements {
		byNode[p.Node] = append(byNode[p.Node], replicaView{Label: fmt.Sprintf("%s[%d]", p.Workload, p.Replica), Tier: p.Tier, Reason: p.Reason})
	}
	vms := map[string][]hostView{}
	type placed struct {
		dc, rack string
		host     hostView
	}
	var hosts []placed
	for _, t := range set.Topologies {
		for _, n := range t.Spec.Nodes {
			hv := hostView{Name: n.Name, State: cmp.Or(state[n.Name], wire.NodeUnknown), Runtimes: pl.offers[n.Name], Tenant: n.Tenant, Replicas: byNode[n.Name]}
			if n.Host != "" {
				vms[n.Host] = append(vms[n.Host], hv)
				continue
			}
			var other []string
			for _, level := range slices.Sorted(maps.Keys(n.Domains)) {
				if level != "datacenter" && level != "rack" {
					other = append(other, level+" "+n.Domains[level])
				}
			}
			hv.Domains = strings.Join(other, " · ")
			hosts = append(hosts, placed{dc: cmp.Or(n.Domains["datacenter"], "(no datacenter)"), rack: cmp.Or(n.Domains["rack"], "(no rack)"), host: hv})
		}
	}
	slices.SortFunc(hosts, func(a, b placed) int {
		return cmp.Or(strings.Compare(a.dc, b.dc), strings.Compare(a.rack, b.rack), strings.Compare(a.host.Name, b.host.Name))
	})
	for _, h := range hosts {
		h.host.VMs = vms[h.host.Name]
		slices.SortFunc(h.host.VMs, func(a, b hostView) int { return strings.Compare(a.Name, b.Name) })
		if len(view.Datacenters) == 0 || view.Datacenters[len(view.Datacenters)-1].Name != h.dc {
			view.Datacenters = append(view.Datacenters, dcView{Name: h.dc})
		}
		dc := &view.Datacenters[len(view.Datacenters)-1]
		if len(dc.Racks) == 0 || dc.Racks[len(dc.Racks)-1].Name != h.rack {
			dc.Racks = append(dc.Racks, rackView{Name: h.rack})
		}
		rack := &dc.Racks[len(dc.Racks)-1]
		rack.Hosts = append(rack.Hosts, h.host)
	}
	return view
}
