package app

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/store/bolt"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	y := filepath.Join(dir, "rung.yaml")
	os.WriteFile(y, []byte("dataDir: /var/lib/rung\nlisten: 127.0.0.1:0\nstore: etcd://10.0.0.1:2379\nshutdownTimeout: 3s\n"), 0o644)
	c, err := LoadConfig(y)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/rung" || c.Listen != "127.0.0.1:0" || c.Store != "etcd://10.0.0.1:2379" || time.Duration(c.ShutdownTimeout) != 3*time.Second {
		t.Errorf("config %+v", c)
	}
	j := filepath.Join(dir, "rung.json")
	os.WriteFile(j, []byte(`{"dataDir": "/d", "listn": ":1"}`), 0o644)
	if _, err := LoadConfig(j); err == nil || !strings.Contains(err.Error(), "listn") {
		t.Errorf("unknown field: %v", err)
	}
	os.WriteFile(j, []byte(`{"shutdownTimeout": 5}`), 0o644)
	if _, err := LoadConfig(j); err == nil {
		t.Error("numeric duration accepted")
	}
}

// up starts Up in the background and returns its info and a stop
// function that returns Up's error.
func up(t *testing.T, cfg Config) (Info, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	infoc := make(chan Info, 1)
	done := make(chan error, 1)
	go func() { done <- Up(ctx, cfg, nil, func(i Info) { infoc <- i }) }()
	select {
	case info := <-infoc:
		return info, func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(15 * time.Second):
				t.Fatal("Up did not return after cancel")
				return nil
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("Up: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Up not ready in 30s")
	}
	return Info{}, nil
}

func TestUpRestartShutdown(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", ClientConfig: filepath.Join(dir, "home", "config.json")}
	start := time.Now()
	info, stop := up(t, cfg)
	t.Logf("ready in %v at %s", time.Since(start), info.URL)
	cc, err := client.LoadConfig(cfg.ClientConfig)
	if err != nil || cc.Server != info.URL {
		t.Fatalf("client config %+v %v", cc, err)
	}
	c, err := client.New(cc.Server, cc.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	who, err := c.WhoAmI(t.Context())
	if err != nil || who.Role != "operator" {
		t.Fatalf("whoami %+v %v", who, err)
	}
	// A second control plane on the same data directory is refused.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = Up(ctx, Config{DataDir: cfg.DataDir, Listen: "127.0.0.1:0", ClientConfig: "-"}, nil, nil)
	if !errors.Is(err, bolt.ErrLocked) {
		t.Errorf("second Up on one data dir: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := http.Get(info.URL + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
	// Restart: same admin token, state kept.
	info2, stop2 := up(t, cfg)
	cc2, _ := client.LoadConfig(cfg.ClientConfig)
	if cc2.Token != cc.Token || cc2.Server != info2.URL {
		t.Errorf("restart changed the token or did not update the address: %+v vs %+v", cc2, cc)
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	// A lost token file gets a new token.
	os.Remove(filepath.Join(cfg.DataDir, AdminTokenFile))
	_, stop3 := up(t, cfg)
	cc3, _ := client.LoadConfig(cfg.ClientConfig)
	if cc3.Token == cc.Token || cc3.Token == "" {
		t.Error("no new token after the token file was removed")
	}
	stop3()
}

func TestUpBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []Config{
		{DataDir: dir, Listen: "127.0.0.1:0", Store: "zookeeper://x", ClientConfig: "-"},
		{DataDir: dir, Listen: "256.0.0.1:99999", ClientConfig: "-"},
	} {
		if err := Up(t.Context(), cfg, nil, func(Info) { t.Error("ready with a bad config") }); err == nil {
			t.Errorf("Up(%+v) = nil", cfg)
		}
	}
}
