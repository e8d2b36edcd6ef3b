package app

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rung.dev/rung/internal/client"
)

// TestUpRotateAdmin: `rung token rotate-admin` against a running `rung
// up`: the old admin token stops working and rung up writes the new one
// to its admin.token file and client configs. A lost token file gets a
// new token that revokes the old one. /metrics needs the operator token
// on the API's address, and is open on the separate metrics address.
func TestUpRotateAdmin(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", ClientConfig: filepath.Join(dir, "home", "config.json"),
		MetricsListen: "127.0.0.1:0"}
	info, stop := up(t, cfg)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	ctx := t.Context()
	old := readToken(t, info.TokenFile)
	c, err := client.New(info.URL, old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}

	// Metrics: operator only on the API, open on their own address.
	for url, want := range map[string]int{info.URL + "/metrics": http.StatusUnauthorized, info.MetricsURL: http.StatusOK} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == http.StatusOK && !strings.Contains(string(body), "rung_api_request_duration_seconds") {
			t.Errorf("GET %s without a token: %d, want %d", url, resp.StatusCode, want)
		}
	}

	res, err := c.RotateAdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Warning != "" {
		t.Errorf("warning: %s", res.Warning)
	}
	if _, err := c.WhoAmI(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("old admin token after rotation: %v", err)
	}
	if got := readToken(t, info.TokenFile); got != res.Token {
		t.Errorf("admin.token holds %q…, want the new token", got[:min(len(got), 12)])
	}
	for _, p := range info.ClientConfigs {
		cc, err := client.LoadConfig(p)
		if err != nil || cc.Token != res.Token {
			t.Errorf("client config %s not updated: %v", p, err)
		}
	}
	c2, _ := client.New(info.URL, res.Token)
	if w, err := c2.WhoAmI(ctx); err != nil || w.Role != "operator" {
		t.Fatalf("new admin token: %+v %v", w, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stop = nil

	// A lost token file: the new up makes a token and revokes its old one.
	os.Remove(info.TokenFile)
	info2, stop2 := up(t, cfg)
	defer stop2()
	fresh := readToken(t, info2.TokenFile)
	c3, _ := client.New(info2.URL, res.Token)
	if _, err := c3.WhoAmI(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("the lost file's token after a new one was made: %v", err)
	}
	c4, _ := client.New(info2.URL, fresh)
	if _, err := c4.WhoAmI(ctx); err != nil {
		t.Errorf("the new token: %v", err)
	}
}

func readToken(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
