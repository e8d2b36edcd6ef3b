package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"

	"rung.dev/rung/internal/auth"
)

// browser is a cookie-keeping client that doesn't follow redirects.
type browser struct {
	t      *testing.T
	base   string
	cookie *http.Cookie
}

func (b *browser) send(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == "rung_session" {
			b.cookie = c
			if c.MaxAge < 0 {
				b.cookie = nil
			}
		}
	}
	return resp, string(body)
}

func (b *browser) get(path string) (*http.Response, string) {
	req, _ := http.NewRequest("GET", b.base+path, nil)
	return b.send(req)
}

func (b *browser) post(path, origin string, form url.Values) (*http.Response, string) {
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.send(req)
}

// TestDashboardSignIn walks the sign-in: the page asks for a token; a bad
// token or a form posted from another site sets no session; a good one
// does (HttpOnly, SameSite=Strict) and shows the dashboard; signing out
// ends it. Every page carries the strict headers.
func TestDashboardSignIn(t *testing.T) {
	e := newEnv(t).seed()
	b := &browser{t: t, base: e.url}
	u, _ := url.Parse(e.url)

	resp, body := b.get("/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Fatalf("GET / signed out: %d\n%s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "same-origin",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}

	resp, _ = b.post("/ui/login", e.url, url.Values{"token": {"rung_0000000000000000_nope"}})
	if resp.StatusCode != http.StatusUnauthorized || b.cookie != nil {
		t.Errorf("bad token: %d, cookie %v", resp.StatusCode, b.cookie)
	}
	resp, _ = b.post("/ui/login", "http://evil.example", url.Values{"token": {e.tokens["operator"]}})
	if resp.StatusCode != http.StatusForbidden || b.cookie != nil {
		t.Errorf("cross-site sign-in: %d, cookie %v", resp.StatusCode, b.cookie)
	}
	// What browsers send under the old Referrer-Policy no-referrer: Origin
	// null. Sec-Fetch-Site decides when present (Chromium and Firefox send
	// it to localhost and HTTPS); without it, null is refused.
	for _, c := range []struct {
		site string
		want int
	}{{"cross-site", http.StatusForbidden}, {"same-site", http.StatusForbidden}, {"", http.StatusForbidden}, {"same-origin", http.StatusSeeOther}} {
		req, _ := http.NewRequest("POST", e.url+"/ui/login", strings.NewReader(url.Values{"token": {e.tokens["viewer"]}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "null")
		if c.site != "" {
			req.Header.Set("Sec-Fetch-Site", c.site)
		}
		nb := &browser{t: t, base: e.url}
		if resp, _ := nb.send(req); resp.StatusCode != c.want || (nb.cookie != nil) != (c.want == http.StatusSeeOther) {
			t.Errorf("sign-in with Origin null, Sec-Fetch-Site %q: %d, cookie %v; want %d", c.site, resp.StatusCode, nb.cookie, c.want)
		}
	}
	resp, _ = b.post("/ui/login", "http://"+u.Host, url.Values{"token": {e.tokens["operator"]}})
	if resp.StatusCode != http.StatusSeeOther || b.cookie == nil {
		t.Fatalf("sign-in: %d, cookie %v", resp.StatusCode, b.cookie)
	}
	if !b.cookie.HttpOnly || b.cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v, want HttpOnly and SameSite=Strict", b.cookie)
	}
	// The cookie is a session ID, not the token: a cookie goes to every
	// port of the host.
	_, secret, _ := strings.Cut(strings.TrimPrefix(e.tokens["operator"], "rung_"), "_")
	if strings.Contains(b.cookie.Value, secret) || strings.Contains(b.cookie.Value, e.tokens["operator"]) {
		t.Errorf("session cookie %q carries the token", b.cookie.Value)
	}
	forged := &browser{t: t, base: e.url, cookie: &http.Cookie{Name: "rung_session", Value: "forged"}}
	if _, body := forged.get("/"); !strings.Contains(body, `name="token"`) || strings.Contains(body, "Topology") {
		t.Error("a forged session opened the dashboard")
	}
	resp, body = b.get("/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Topology") || !strings.Contains(body, "operator") {
		t.Errorf("dashboard: %d\n%s", resp.StatusCode, body)
	}
	if resp, css := b.get("/ui/style.css"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(css, ".host") {
		t.Errorf("style.css: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// The API never takes the cookie: another site can't make a signed-in
	// browser call it.
	req, _ := http.NewRequest("GET", e.url+"/v1/plan", nil)
	if resp, _ := b.send(req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/plan with the session cookie only: %d, want 401", resp.StatusCode)
	}

	csrf := csrfOf(t, body)
	if resp, _ := b.post("/ui/logout", "http://evil.example", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusForbidden || b.cookie == nil {
		t.Errorf("cross-site sign-out: %d, cookie %v", resp.StatusCode, b.cookie)
	}
	// Same origin but without the session's csrf value (a client that
	// sends no Origin, or a browser that sends none): refused too.
	if resp, _ := b.post("/ui/logout", "", url.Values{"csrf": {"guess"}}); resp.StatusCode != http.StatusForbidden || b.cookie == nil {
		t.Errorf("sign-out without the csrf value: %d, cookie %v", resp.StatusCode, b.cookie)
	}
	old := *b.cookie
	b.post("/ui/logout", "http://"+u.Host, url.Values{"csrf": {csrf}})
	if b.cookie != nil {
		t.Errorf("signed out, cookie %v remains", b.cookie)
	}
	if _, body := b.get("/"); !strings.Contains(body, `name="token"`) {
		t.Error("after sign-out the dashboard still shows")
	}
	// The old session ID is dead on the server, not just in the browser.
	replay := &browser{t: t, base: e.url, cookie: &old}
	if _, body := replay.get("/"); strings.Contains(body, "Topology") {
		t.Error("the signed-out session still opens the dashboard")
	}

	// A node's token can't sign in.
	tok, _, err := e.srv.IssueToken(t.Context(), auth.Principal{Role: auth.Operator}, auth.Principal{Role: auth.NodeAgent, Node: "n1"}, "agent")
	if err != nil {
		t.Fatal(err)
	}
	nb := &browser{t: t, base: e.url}
	if resp, _ := nb.post("/ui/login", "", url.Values{"token": {tok}}); resp.StatusCode != http.StatusForbidden || nb.cookie != nil {
		t.Errorf("node token sign-in: %d, cookie %v", resp.StatusCode, nb.cookie)
	}
}

// hostsOnPage reads the operator dashboard: node name → the replica labels
// listed under it.
func hostsOnPage(t *testing.T, page string) map[string][]string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var walk func(n *html.Node, host string)
	walk = func(n *html.Node, host string) {
		if n.Type == html.ElementNode && n.Data == "div" && hasClass(n, "host") {
			host = text(find(n, "strong"))
			out[host] = []string{}
		}
		if n.Type == html.ElementNode && n.Data == "li" && hasClass(n, "tier") && host != "" {
			label, _, _ := strings.Cut(strings.TrimSpace(text(n)), " ")
			out[host] = append(out[host], label)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && c.Data == "div" && hasClass(c, "vm") {
				walk(c, "")
				continue
			}
			walk(c, host)
		}
	}
	walk(doc, "")
	for h := range out {
		slices.Sort(out[h])
	}
	return out
}

func hasClass(n *html.Node, c string) bool {
	for _, a := range n.Attr {
		if a.Key == "class" && slices.Contains(strings.Fields(a.Val), c) {
			return true
		}
	}
	return false
}

func find(n *html.Node, tag string) *html.Node {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.Data == tag {
			return c
		}
		if f := find(c, tag); f != nil {
			return f
		}
	}
	return nil
}

func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(text(c))
	}
	return b.String()
}

// TestDashboardShowsThePlan: every node of the topology is on the page,
// and under each exactly the replicas the API's plan puts there.
func TestDashboardShowsThePlan(t *testing.T) {
	e := newEnv(t).seed()
	res, err := e.client("operator").Plan(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	set, _, err := e.srv.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, top := range set.Topologies {
		for _, n := range top.Spec.Nodes {
			want[n.Name] = []string{}
		}
	}
	for _, p := range res.Placements {
		want[p.Node] = append(want[p.Node], fmt.Sprintf("%s[%d]", p.Workload, p.Replica))
	}
	for n := range want {
		slices.Sort(want[n])
	}
	r := e.do("operator", "GET", "/ui/topology", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /ui/topology as operator: %d\n%s", r.status, r.body)
	}
	if diff := cmp.Diff(want, hostsOnPage(t, string(r.body))); diff != "" {
		t.Errorf("replicas by node (-plan +page):\n%s", diff)
	}
	r = e.do("operator", "GET", "/", nil)
	// The latest events, as `rung get events` names them.
	for _, w := range []string{"Recent events", "<td>Workload biology/sequencer</td>", "<td>Tenant geology</td>"} {
		if !strings.Contains(string(r.body), w) {
			t.Errorf("operator dashboard lacks %q", w)
		}
	}
}

// TestDashboardTenantView: a tenant sees its own replicas and nothing of
// another tenant, not even its name; a node's token may not see the plan.
func TestDashboardTenantView(t *testing.T) {
	e := newEnv(t).seed()
	r := e.do("admin", "GET", "/", nil)
	page := string(r.body)
	if r.status != http.StatusOK || !strings.Contains(page, `>biology/sequencer</a>`) {
		t.Fatalf("biology admin: %d\n%s", r.status, page)
	}
	if !strings.Contains(page, "<td>Workload biology/sequencer</td>") {
		t.Error("biology's dashboard lacks its own events")
	}
	for _, leak := range []string{"geology", "Topology"} {
		if strings.Contains(page, leak) {
			t.Errorf("biology's dashboard shows %q", leak)
		}
	}
	tok, _, err := e.srv.IssueToken(t.Context(), auth.Principal{Role: auth.Operator}, auth.Principal{Role: auth.NodeAgent, Node: "n1"}, "agent")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do(tok, "GET", "/", nil); r.status != http.StatusForbidden || strings.Contains(string(r.body), "biology") {
		t.Errorf("node token: %d\n%s", r.status, r.body)
	}
}

// TestDashboardSessionsPerToken: one token signing in again and again
// keeps only its newest sessions; the oldest end.
func TestDashboardSessionsPerToken(t *testing.T) {
	e := newEnv(t).seed()
	var cookies []*http.Cookie
	for range 10 {
		b := &browser{t: t, base: e.url}
		if resp, _ := b.post("/ui/login", "", url.Values{"token": {e.tokens["viewer"]}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in: %d", resp.StatusCode)
		}
		cookies = append(cookies, b.cookie)
	}
	alive := 0
	for i, c := range cookies {
		b := &browser{t: t, base: e.url, cookie: c}
		_, body := b.get("/")
		if open := strings.Contains(body, "Sign out"); open {
			alive++
			if i < 2 {
				t.Errorf("session %d of 10 still open", i)
			}
		}
	}
	if alive != 8 {
		t.Errorf("%d sessions open, want the newest 8", alive)
	}
}

// csrfOf reads the sign-out form's csrf value off a page.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var val string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" {
			m := map[string]string{}
			for _, a := range n.Attr {
				m[a.Key] = a.Val
			}
			if m["name"] == "csrf" {
				val = m["value"]
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if val == "" {
		t.Fatal("the page has no sign-out form with a csrf value")
	}
	return val
}

// TestDashboardPagesTenant: every page a tenant opens shows its own
// objects and nothing of another tenant's; the operator's pages answer 404
// to a tenant, as a missing page does.
func TestDashboardPagesTenant(t *testing.T) {
	e := newEnv(t).seed()
	for _, c := range []struct {
		who, path string
		status    int
		want      string
	}{
		{"operator", "/ui/workloads/biology/sequencer", 200, "Workload biology/sequencer"},
		{"operator", "/ui/nodes/h1", 200, "Node h1"},
		{"operator", "/ui/search?q=rock", 200, "geology/rocks"},
		{"operator", "/ui/nodes/nope", 404, "no such node"},
		{"geo-admin", "/", 200, "geology/rocks"},
		{"geo-admin", "/ui/workloads/geology/rocks", 200, "Workload geology/rocks"},
		{"geo-admin", "/ui/workloads/biology/sequencer", 404, "no such workload"},
		{"geo-admin", "/ui/workloads/biology/nope", 404, "no such workload"},
		{"geo-admin", "/ui/topology", 404, "for operators"},
		{"geo-admin", "/ui/nodes/h1", 404, "no such node"},
		{"geo-admin", "/ui/search?q=o", 200, "geology/rocks"},
	} {
		r := e.do(c.who, "GET", c.path, nil)
		page := string(r.body)
		if r.status != c.status || !strings.Contains(page, c.want) {
			t.Errorf("%s GET %s: %d, want %d with %q\n%s", c.who, c.path, r.status, c.status, c.want, page)
		}
		if c.who == "geo-admin" && (strings.Contains(page, "biology") || strings.Contains(page, "sequencer")) {
			t.Errorf("geology sees biology at %s:\n%s", c.path, page)
		}
	}
}
