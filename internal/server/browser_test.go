package server_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium (apt package chromium); the test never
// downloads a browser.
const chromiumPath = "/usr/bin/chromium"

// newChromium starts a headless Debian chromium with a fresh profile and
// returns a browser tab's context.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Skipf("browser test: %s not installed (apt-get install chromium)", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// TestBrowserSignIn signs in and out in a real Chromium, with the page's
// own security headers.
func TestBrowserSignIn(t *testing.T) {
	e := newEnv(t).seed()
	ctx := newChromium(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(e.url+"/"),
		chromedp.WaitVisible(`input[name=token]`),
		chromedp.SendKeys(`input[name=token]`, e.tokens["operator"]),
		chromedp.Click(`form[action="/ui/login"] button`),
		chromedp.WaitReady(`body`),
	)
	if err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(ctx, chromedp.Text(`body`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, "Sign out") {
		t.Fatalf("signed in, the page shows:\n%s", body)
	}
}
