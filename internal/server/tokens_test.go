package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// TestTokenLifecycle: create with name and TTL, list (no secrets), use,
// expire, revoke; the store holds only a hash.
func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	e := newEnvWith(t, func(c *server.Config) { c.Now = clk.now }).seed()
	ctx := t.Context()
	op := e.client("operator")

	made, err := op.NewToken(ctx, wire.TokenRequest{Role: "tenant-admin", Tenant: "biology", Name: "ci", TTL: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.now().Add(2 * time.Hour); made.Expires.Sub(want).Abs() > time.Second {
		t.Errorf("expires %v, want %v", made.Expires, want)
	}
	e.tokens["ci"] = made.Token
	if w, err := e.client("ci").WhoAmI(ctx); err != nil || w.Tenant != "biology" || w.ID != made.ID {
		t.Fatalf("whoami with the new token: %+v %v", w, err)
	}

	// Only the hash is stored.
	v, err := e.store.Get(ctx, "/tokens/"+made.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, _ := auth.ParseToken(made.Token)
	if strings.Contains(string(v.Data), secret) || strings.Contains(string(v.Data), made.Token) {
		t.Fatalf("stored record holds the secret: %s", v.Data)
	}

	// The list shows it, with its name and expiry, and no secret or hash.
	r := e.do("operator", "GET", "/v1/tokens", nil)
	if r.status != http.StatusOK || strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), `"hash"`) {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	toks, err := op.AllTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, ok := findToken(toks, made.ID)
	if !ok || info.Name != "ci" || info.Role != "tenant-admin" || info.Tenant != "biology" || info.State != wire.TokenActive || info.Expires.IsZero() {
		t.Fatalf("listed %+v (found %v)", info, ok)
	}
	// Only operators list, revoke or rotate.
	if _, err := e.client("admin").ListTokens(ctx, 0, ""); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("tenant-admin lists tokens: %v", err)
	}
	if _, err := e.client("admin").RevokeToken(ctx, made.ID); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("tenant-admin revokes: %v", err)
	}

	// Bad TTLs are refused, naming the field.
	for _, ttl := range []string{"forever", "0s", "-1h", "400d", "30s"} {
		_, err := op.NewToken(ctx, wire.TokenRequest{Role: "tenant-viewer", Tenant: "biology", TTL: ttl})
		if !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "ttl") {
			t.Errorf("ttl %q: %v", ttl, err)
		}
	}

	// Past its expiry it fails; the list says expired.
	clk.add(2*time.Hour + time.Second)
	if _, err := e.client("ci").WhoAmI(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("expired token: %v", err)
	}
	toks, _ = op.AllTokens(ctx)
	if info, _ := findToken(toks, made.ID); info.State != wire.TokenExpired {
		t.Errorf("expired token listed as %q", info.State)
	}

	// Revoke: the viewer's token stops working, the admin's does not.
	viewer, ok := findBy(toks, func(i wire.TokenInfo) bool { return i.Role == "tenant-viewer" })
	if !ok {
		t.Fatal("no viewer token listed")
	}
	if _, err := e.client("viewer").WhoAmI(ctx); err != nil {
		t.Fatalf("viewer before revoke: %v", err)
	}
	if _, err := op.RevokeToken(ctx, viewer.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client("viewer").WhoAmI(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("revoked token: %v", err)
	}
	if _, err := e.client("admin").WhoAmI(ctx); err != nil {
		t.Errorf("another token after a revoke: %v", err)
	}
	if _, err := op.RevokeToken(ctx, viewer.ID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("revoke twice: %v", err)
	}
	if _, err := op.RevokeToken(ctx, "../../tenants"); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("revoke a malformed id: %v", err)
	}
	if got := e.lastAudit(); got.Action != "token.revoke" || !strings.Contains(got.Object, viewer.ID) {
		t.Errorf("last audit entry %+v", got)
	}
}

func findToken(toks []wire.TokenInfo, id string) (wire.TokenInfo, bool) {
	return findBy(toks, func(i wire.TokenInfo) bool { return i.ID == id })
}

func findBy(toks []wire.TokenInfo, f func(wire.TokenInfo) bool) (wire.TokenInfo, bool) {
	for _, t := range toks {
		if f(t) {
			return t, true
		}
	}
	return wire.TokenInfo{}, false
}

// TestTenantRecreatedGetsNoOldTokens: deleting a tenant revokes its
// tokens, and a new tenant of the same name gets none of them (they
// could create workloads in it).
func TestTenantRecreatedGetsNoOldTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	ctx := t.Context()
	op := e.client("operator")
	tenant := []byte(`{"apiVersion":"rung.dev/v1","kind":"Tenant","metadata":{"name":"chem"},"spec":{"trust":"trusted","quota":{"cpu":"4","memory":"8Gi"}}}`)
	if r := e.do("operator", "PUT", "/v1/tenants/chem", tenant); r.status != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", r.status, r.body)
	}
	old, err := op.NewToken(ctx, wire.TokenRequest{Role: "tenant-admin", Tenant: "chem"})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["old"] = old.Token
	if r := e.do("old", "PUT", "/v1/tenants/chem/workloads/lab", workloadJSON("chem", "lab", 1)); r.status != http.StatusCreated {
		t.Fatalf("old token before the delete: %d %s", r.status, r.body)
	}
	if r := e.do("old", "DELETE", "/v1/tenants/chem/workloads/lab", nil); r.status != http.StatusOK {
		t.Fatalf("delete workload: %d %s", r.status, r.body)
	}
	if r := e.do("operator", "DELETE", "/v1/tenants/chem", nil); r.status != http.StatusOK {
		t.Fatalf("delete tenant: %d %s", r.status, r.body)
	}
	if r := e.do("old", "GET", "/v1/whoami", nil); r.status != http.StatusUnauthorized {
		t.Errorf("deleted tenant's token: %d", r.status)
	}

	// The same name again: the old token stays dead, a new one works.
	if r := e.do("operator", "PUT", "/v1/tenants/chem", tenant); r.status != http.StatusCreated {
		t.Fatalf("create tenant again: %d %s", r.status, r.body)
	}
	if r := e.do("old", "PUT", "/v1/tenants/chem/workloads/evil", workloadJSON("chem", "evil", 1)); r.status != http.StatusUnauthorized {
		t.Fatalf("old token in the new tenant of the same name: %d %s", r.status, r.body)
	}
	fresh, err := op.NewToken(ctx, wire.TokenRequest{Role: "tenant-admin", Tenant: "chem"})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["fresh"] = fresh.Token
	if r := e.do("fresh", "PUT", "/v1/tenants/chem/workloads/lab", workloadJSON("chem", "lab", 1)); r.status != http.StatusCreated {
		t.Fatalf("new token: %d %s", r.status, r.body)
	}
	toks, err := op.AllTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := findToken(toks, old.ID); ok {
		t.Errorf("the deleted tenant's token is still listed")
	}
	// A tenant token for a tenant that does not exist is refused.
	if _, err := op.NewToken(ctx, wire.TokenRequest{Role: "tenant-admin", Tenant: "nosuch"}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("token for a missing tenant: %v", err)
	}
}

// TestLegacyTenantTokenFailsClosed: a tenant token stored before tenants
// had unique ids (no tenantUID) is refused; a new one works.
func TestLegacyTenantTokenFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	ctx := t.Context()
	tok, rec, err := auth.NewToken(nil, auth.Principal{Role: auth.TenantAdmin, Tenant: "biology"}, time.Now(), "old")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(rec)
	if _, err := e.store.Put(ctx, "/tokens/"+rec.ID, data, store.Create); err != nil {
		t.Fatal(err)
	}
	e.tokens["legacy"] = tok
	if r := e.do("legacy", "GET", "/v1/whoami", nil); r.status != http.StatusUnauthorized {
		t.Errorf("legacy tenant token: %d", r.status)
	}
	if r := e.do("admin", "GET", "/v1/whoami", nil); r.status != http.StatusOK {
		t.Errorf("current tenant token: %d", r.status)
	}
}

// TestRotateAdmin: rotation makes a new admin token, revokes the old one
// and hands the new one to rung up; other operator tokens keep working.
func TestRotateAdmin(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		written []string
	)
	e := newEnvWith(t, func(c *server.Config) {
		c.OnAdminToken = func(_ context.Context, tok string) error {
			mu.Lock()
			defer mu.Unlock()
			written = append(written, tok)
			return nil
		}
	}).seed()
	ctx := t.Context()
	admin, _, err := e.srv.IssueAdminToken(ctx, auth.Principal{}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["root"] = admin
	if r := e.do("root", "GET", "/v1/whoami", nil); r.status != http.StatusOK {
		t.Fatalf("admin token: %d", r.status)
	}
	res, err := e.client("root").RotateAdminToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("root", "GET", "/v1/whoami", nil); r.status != http.StatusUnauthorized {
		t.Errorf("old admin token after rotation: %d", r.status)
	}
	e.tokens["root2"] = res.Token
	if r := e.do("root2", "GET", "/v1/tokens", nil); r.status != http.StatusOK {
		t.Errorf("new admin token: %d %s", r.status, r.body)
	}
	if r := e.do("operator", "GET", "/v1/whoami", nil); r.status != http.StatusOK {
		t.Errorf("another operator token after rotation: %d", r.status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(written) != 1 || written[0] != res.Token {
		t.Errorf("rung up was handed %d token(s)", len(written))
	}
	// A tenant may not rotate.
	if r := e.do("admin", "POST", "/v1/tokens/admin/rotate", nil); r.status != http.StatusForbidden {
		t.Errorf("tenant rotates: %d", r.status)
	}
}
