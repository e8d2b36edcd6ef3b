package server_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// firefoxPath is Debian's firefox-esr (apt package firefox-esr); the test
// never downloads a browser. Debian ships no geckodriver, so the test
// speaks WebDriver BiDi, Firefox's built-in remote protocol, itself.
const firefoxPath = "/usr/bin/firefox-esr"

// ffWait bounds every wait on Firefox: its start takes 20 s and more on a
// loaded two-core machine. A bound, so a hang fails; no timing is checked.
const ffWait = 3 * time.Minute

// bidi is one WebDriver BiDi session with a headless Firefox, driving its
// first tab.
type bidi struct {
	t       *testing.T
	ws      *websocket.Conn
	mu      sync.Mutex // one command at a time
	next    int
	context string // the tab's browsing context id
	shots   string
}

// newFirefox starts a headless Debian firefox-esr with a fresh profile
// and home, opens a BiDi session and returns it driving the first tab.
// Firefox and its content processes (one process group) are killed when
// the test ends.
func newFirefox(t *testing.T) *bidi {
	t.Helper()
	if _, err := exec.LookPath(firefoxPath); err != nil {
		t.Skipf("firefox test: %s not installed (apt-get install firefox-esr)", firefoxPath)
	}
	home, profile := t.TempDir(), t.TempDir()
	// Nothing to fetch from elsewhere at start (the test's network is
	// loopback only): no updates, telemetry, captive-portal probe or
	// first-run pages.
	prefs := `user_pref("app.update.disabledForTesting", true);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("browser.safebrowsing.update.enabled", false);
`
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(prefs), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(firefoxPath, "--headless", "--no-remote", "--remote-debugging-port=0", "--profile", profile, "about:blank")
	cmd.Env = append(os.Environ(), "HOME="+home, "MOZ_CRASHREPORTER_DISABLE=1", "MOZ_HEADLESS_WIDTH=1280", "MOZ_HEADLESS_HEIGHT=900")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", firefoxPath, err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group: content processes too
		cmd.Wait()
	})
	// Firefox names its endpoint on stderr: "WebDriver BiDi listening on
	// ws://127.0.0.1:PORT". The rest of stderr is kept for a failure.
	found := make(chan string, 1)
	var logMu sync.Mutex
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			log.WriteString(line + "\n")
			logMu.Unlock()
			if _, url, ok := strings.Cut(line, "WebDriver BiDi listening on "); ok {
				select {
				case found <- strings.TrimSpace(url):
				default:
				}
			}
		}
		close(found)
	}()
	var url string
	select {
	case u, ok := <-found:
		if !ok {
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("%s exited before listening:\n%s", firefoxPath, log.String())
		}
		url = u
	case <-time.After(ffWait):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("%s did not listen for WebDriver BiDi within %v:\n%s", firefoxPath, ffWait, log.String())
	}
	ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), url+"/session", nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { ws.Close() })
	dir := os.Getenv("RUNG_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &bidi{t: t, ws: ws, shots: dir}
	b.call("session.new", map[string]any{"capabilities": map[string]any{}}, nil)
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	b.call("browsingContext.getTree", map[string]any{"maxDepth": 0}, &tree)
	if len(tree.Contexts) == 0 {
		t.Fatal("firefox has no tab")
	}
	b.context = tree.Contexts[0].Context
	b.call("browsingContext.setViewport", map[string]any{"context": b.context, "viewport": map[string]int{"width": 1280, "height": 900}}, nil)
	return b
}

// bidiError is a command's error reply.
type bidiError struct{ Code, Message string }

func (e *bidiError) Error() string { return e.Code + ": " + e.Message }

// send sends one command and returns its result, skipping the events
// that arrive meanwhile.
func (b *bidi) send(method string, params any, out any) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	b.ws.SetWriteDeadline(time.Now().Add(ffWait))
	if err := b.ws.WriteJSON(map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	b.ws.SetReadDeadline(time.Now().Add(ffWait))
	for {
		var msg struct {
			ID      *int            `json:"id"`
			Type    string          `json:"type"`
			Result  json.RawMessage `json:"result"`
			Error   string          `json:"error"`
			Message string          `json:"message"`
		}
		if err := b.ws.ReadJSON(&msg); err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		if msg.ID == nil || *msg.ID != id {
			continue // an event
		}
		if msg.Type == "error" {
			return fmt.Errorf("%s: %w", method, &bidiError{msg.Error, msg.Message})
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(msg.Result, out)
	}
}

func (b *bidi) call(method string, params any, out any) {
	b.t.Helper()
	if err := b.send(method, params, out); err != nil {
		b.t.Fatal(err)
	}
}

// navigate loads url and waits until the page has loaded.
func (b *bidi) navigate(url string) {
	b.t.Helper()
	b.call("browsingContext.navigate", map[string]any{"context": b.context, "url": url, "wait": "complete"}, nil)
}

// eval evaluates a JavaScript expression that yields a string in the page
// (WebDriver's own realm: the page's Content-Security-Policy, which lets
// no script of the page's run, does not apply to it).
func (b *bidi) eval(expr string) (string, error) {
	var res struct {
		Type   string `json:"type"`
		Result struct {
			Type  string `json:"type"`
			Value any    `json:"value"`
		} `json:"result"`
		ExceptionDetails struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	err := b.send("script.evaluate", map[string]any{"expression": expr, "target": map[string]any{"context": b.context},
		"awaitPromise": false, "resultOwnership": "none"}, &res)
	if err != nil {
		return "", err
	}
	if res.Type != "success" {
		return "", fmt.Errorf("evaluate %s: %s", expr, res.ExceptionDetails.Text)
	}
	s, _ := res.Result.Value.(string)
	return s, nil
}

// page is what the tab shows once loaded: its address and visible text.
type ffPage struct{ URL, Text string }

// until polls the loaded page until ok holds (a navigation started by a
// click may still be under way; an evaluation during it fails and is
// retried) and returns it. It fails the test after ffWait.
func (b *bidi) until(what string, ok func(ffPage) bool) ffPage {
	b.t.Helper()
	deadline := time.Now().Add(ffWait)
	var last ffPage
	var lastErr error
	for time.Now().Before(deadline) {
		s, err := b.eval(`document.readyState === "complete" ? JSON.stringify({URL: location.href, Text: document.body ? document.body.innerText : ""}) : ""`)
		lastErr = err
		if err == nil && s != "" {
			var p ffPage
			if err := json.Unmarshal([]byte(s), &p); err != nil {
				b.t.Fatal(err)
			}
			last = p
			if ok(p) {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("%s: not within %v; last page %s (%v):\n%s", what, ffWait, last.URL, lastErr, last.Text)
	return last
}

func (b *bidi) text() string {
	b.t.Helper()
	return b.until("page text", func(ffPage) bool { return true }).Text
}

// node finds the first element matching the CSS selector sel.
func (b *bidi) node(sel string) map[string]any {
	b.t.Helper()
	var res struct {
		Nodes []struct {
			SharedID string `json:"sharedId"`
		} `json:"nodes"`
	}
	b.call("browsingContext.locateNodes", map[string]any{"context": b.context, "locator": map[string]string{"type": "css", "value": sel}, "maxNodeCount": 1}, &res)
	if len(res.Nodes) == 0 {
		b.t.Fatalf("no %s on the page:\n%s", sel, b.text())
	}
	return map[string]any{"sharedId": res.Nodes[0].SharedID}
}

// click moves the mouse onto the element sel and presses its left button,
// as a person does.
func (b *bidi) click(sel string) {
	b.t.Helper()
	el := b.node(sel)
	b.call("input.performActions", map[string]any{"context": b.context, "actions": []any{map[string]any{
		"type": "pointer", "id": "mouse", "parameters": map[string]string{"pointerType": "mouse"},
		"actions": []any{
			map[string]any{"type": "pointerMove", "x": 0, "y": 0, "origin": map[string]any{"type": "element", "element": el}},
			map[string]any{"type": "pointerDown", "button": 0},
			map[string]any{"type": "pointerUp", "button": 0},
		},
	}}}, nil)
}

// typeInto clicks the field sel and types s on the keyboard.
func (b *bidi) typeInto(sel, s string) {
	b.t.Helper()
	b.click(sel)
	var keys []any
	for _, r := range s {
		keys = append(keys, map[string]any{"type": "keyDown", "value": string(r)}, map[string]any{"type": "keyUp", "value": string(r)})
	}
	b.call("input.performActions", map[string]any{"context": b.context, "actions": []any{map[string]any{"type": "key", "id": "keyboard", "actions": keys}}}, nil)
}

// shot saves a screenshot of the tab as firefox-NAME.png.
func (b *bidi) shot(name string) {
	b.t.Helper()
	var res struct {
		Data string `json:"data"`
	}
	b.call("browsingContext.captureScreenshot", map[string]any{"context": b.context, "origin": "document"}, &res)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if !strings.HasPrefix(string(png), "\x89PNG") {
		b.t.Fatalf("screenshot %s is no PNG (%d bytes)", name, len(png))
	}
	if err := os.WriteFile(filepath.Join(b.shots, "firefox-"+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// signIn types token on the sign-in page of base and presses the button.
func (b *bidi) signIn(base, token, want string) {
	b.t.Helper()
	b.navigate(base + "/")
	b.typeInto(`input[name=token]`, token)
	b.click(`form[action="/ui/login"] button`)
	b.until("signed in", func(p ffPage) bool {
		if strings.Contains(p.Text, "refused") || strings.Contains(p.Text, "malformed, revoked or unknown") {
			b.t.Fatalf("sign-in in Firefox failed:\n%s", p.Text)
		}
		return strings.Contains(p.Text, "Sign out") && strings.Contains(p.Text, want)
	})
}

// TestFirefoxDashboard signs in and out of the dashboard in a real
// Firefox (Debian's firefox-esr, headless, driven over WebDriver BiDi)
// with the page's own security headers, as TestBrowserDashboard does in
// Chromium, and shows that CSRF protection still holds in it: a page of
// another origin that posts the sign-in form (login CSRF: the victim
// signed in as the attacker) and the sign-out form is refused, and the
// victim stays signed in as themself.
func TestFirefoxDashboard(t *testing.T) {
	e := newEnv(t).seed()
	reportNodes(t, e)
	b := newFirefox(t)

	b.signIn(e.url, e.tokens["operator"], "biology/sequencer")
	b.shot("overview")

	// Open a page by its link.
	b.click(`nav a[href="/ui/topology"]`)
	b.until("topology", func(p ffPage) bool {
		return strings.HasSuffix(p.URL, "/ui/topology") && strings.Contains(p.Text, "rack")
	})
	b.click(`.replicas li a[href="/ui/workloads/biology/sequencer"]`)
	b.until("workload page", func(p ffPage) bool {
		return strings.HasSuffix(p.URL, "/ui/workloads/biology/sequencer") && strings.Contains(p.Text, "Workload biology/sequencer")
	})
	b.shot("workload")

	b.click(`form[action="/ui/logout"] button`)
	b.until("signed out", func(p ffPage) bool {
		return strings.Contains(p.Text, "Sign in") && !strings.Contains(p.Text, "Sign out")
	})
	b.shot("signin")
	b.navigate(e.url + "/ui/topology")
	if txt := b.text(); strings.Contains(txt, "rack") || !strings.Contains(txt, "Sign in") {
		t.Errorf("after sign-out /ui/topology shows:\n%s", txt)
	}

	// CSRF: biology's viewer is signed in; a page of another origin
	// (another port of this host: same site, other origin) posts the
	// dashboard's forms at once when opened.
	b.signIn(e.url, e.tokens["viewer"], "biology/")
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		var action, field string
		switch r.URL.Path {
		case "/login": // sign the victim in as geology's admin
			action, field = "/ui/login", `<input name="token" value="`+html.EscapeString(e.tokens["geo-admin"])+`">`
		case "/logout":
			action, field = "/ui/logout", `<input name="csrf" value="guessed">`
		default:
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `<!doctype html><title>attacker</title><form method="post" action="%s%s">%s</form><script>document.forms[0].submit()</script>`,
			e.url, action, field)
	}))
	t.Cleanup(attacker.Close)
	for _, c := range []struct{ path, want string }{
		{"/login", "sign-in refused: the form was posted from another site"},
		{"/logout", "sign-out refused: the form was posted from another site"},
	} {
		b.navigate(attacker.URL + c.path)
		p := b.until("cross-origin "+c.path, func(p ffPage) bool { return strings.HasPrefix(p.URL, e.url) })
		if !strings.Contains(p.Text, c.want) {
			t.Errorf("a cross-origin POST to %s: the page shows\n%s\nwant %q", c.path, p.Text, c.want)
		}
		b.shot("csrf" + strings.ReplaceAll(c.path, "/", "-"))
		// Still biology's viewer, signed in: no geology, sign-out offered.
		b.navigate(e.url + "/")
		if txt := b.text(); !strings.Contains(txt, "Sign out") || !strings.Contains(txt, "biology/") || strings.Contains(txt, "geology") {
			t.Errorf("after the cross-origin POST to %s the overview shows:\n%s", c.path, txt)
		}
	}
	// The dashboard's own sign-out still works after them.
	b.click(`form[action="/ui/logout"] button`)
	b.until("signed out at the end", func(p ffPage) bool {
		return strings.Contains(p.Text, "Sign in") && !strings.Contains(p.Text, "Sign out")
	})
}
