package client

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server/wire"
)

func TestConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "config.json")
	if err := WriteConfig(p, Config{Server: "http://127.0.0.1:1", Token: "t"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(p)); di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", di.Mode().Perm())
	}
	c, err := LoadConfig(p)
	if err != nil || c.Server != "http://127.0.0.1:1" || c.Token != "t" {
		t.Fatalf("%+v %v", c, err)
	}
	os.WriteFile(p, []byte(`{"server":"x","tokn":"y"}`), 0o600)
	if _, err := LoadConfig(p); err == nil {
		t.Error("unknown field accepted")
	}
	t.Setenv(ConfigEnv, "/some/where.json")
	if d, _ := DefaultConfigPath(); d != "/some/where.json" {
		t.Errorf("DefaultConfigPath = %s", d)
	}
}

func TestNewAndPaths(t *testing.T) {
	for _, s := range []string{"", "ftp://x", "http://"} {
		if _, err := New(s, ""); err == nil {
			t.Errorf("New(%q) accepted", s)
		}
	}
	c, err := New("127.0.0.1:7440/", "t")
	if err != nil || c.Server() != "http://127.0.0.1:7440" {
		t.Fatalf("%v %v", c.Server(), err)
	}
	for _, tc := range []struct {
		ref  Ref
		want string
	}{
		{Ref{Kind: v1.KindWorkload, Tenant: "a", Name: "b"}, "/v1/tenants/a/workloads/b"},
		{Ref{Kind: v1.KindWorkload}, "/v1/workloads"},
		{Ref{Kind: v1.KindTenant, Name: "../x"}, "/v1/tenants/..%2Fx"},
		{Ref{Kind: v1.KindPolicy, Name: "p"}, "/v1/policies/p"},
	} {
		if got, err := tc.ref.path(); err != nil || got != tc.want {
			t.Errorf("%+v: %q %v", tc.ref, got, err)
		}
	}
	if _, err := (Ref{Kind: "Gadget"}).path(); err == nil {
		t.Error("unknown kind")
	}
}

// TestErrors: API errors match sentinels; a non-JSON error still does.
func TestErrors(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("authorization %q", r.Header.Get("Authorization"))
		}
		switch r.URL.Path {
		case "/v1/tenants/a":
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"code":"quota_exceeded","message":"over","details":["a","b"]}`))
		default:
			http.Error(w, "gateway says no", http.StatusNotFound)
		}
	}))
	defer hs.Close()
	c, _ := New(hs.URL, "tok")
	_, err := c.GetTenant(t.Context(), "a")
	if !errors.Is(err, ErrQuota) || !errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) {
		t.Errorf("quota error %v", err)
	}
	if !strings.Contains(err.Error(), "over\n  - a\n  - b") {
		t.Errorf("message %q", err.Error())
	}
	_, err = c.GetTenant(t.Context(), "b")
	var e *Error
	if !errors.As(err, &e) || e.Code != wire.CodeNotFound || !errors.Is(err, ErrNotFound) {
		t.Errorf("plain 404: %#v", err)
	}
}
