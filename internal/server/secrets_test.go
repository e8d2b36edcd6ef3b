package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/secret"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/store"
)

const dbPassword = "hunter2-correct-horse-battery"

func secretJSON(tenant, name string, data map[string]string) []byte {
	b, _ := json.Marshal(v1.Secret{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindSecret},
		Metadata: v1.ObjectMeta{Name: name, Tenant: tenant}, Spec: v1.SecretSpec{Data: data}})
	return b
}

// TestSecrets: a Secret is write-only through the API (keys and digests,
// never values), sealed at rest, bound to its place, another tenant's is a
// 404, reads for delivery are audited, and the key rotates.
func TestSecrets(t *testing.T) {
	t.Parallel()
	kr, err := secret.Open(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *server.Config) { c.Secrets = kr }).seed()
	ctx := t.Context()
	const path = "/v1/tenants/biology/secrets/db"
	body := secretJSON("biology", "db", map[string]string{"password": dbPassword, "user": "app"})
	if r := e.do("admin", "PUT", path, body); r.status != http.StatusCreated {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	if r := e.do("admin", "PUT", path, body); r.status != http.StatusOK || !strings.Contains(string(r.body), "unchanged") {
		t.Errorf("apply again: %d %s", r.status, r.body)
	}
	yaml := "apiVersion: rung.dev/v1\nkind: Secret\nmetadata: {name: api, tenant: biology}\nspec:\n  data: {token: abc}\n"
	if r := e.do("admin", "PUT", "/v1/tenants/biology/secrets/api", []byte(yaml)); r.status != http.StatusCreated {
		t.Errorf("apply YAML: %d %s", r.status, r.body)
	}

	// Write-only: get and list show keys and digests.
	for _, who := range []string{"admin", "viewer", "operator"} {
		for _, p := range []string{path, "/v1/tenants/biology/secrets", "/v1/secrets"} {
			r := e.do(who, "GET", p, nil)
			if r.status != http.StatusOK || bytes.Contains(r.body, []byte(dbPassword)) || !bytes.Contains(r.body, []byte(`"password"`)) || !bytes.Contains(r.body, []byte("hmac-sha256:")) {
				t.Errorf("GET %s as %s: %d %s", p, who, r.status, r.body)
			}
		}
	}
	// Another tenant's secret is not there; a viewer may not write.
	for _, tc := range []struct {
		who, method, path string
		want              int
	}{
		{"geo-admin", "GET", path, http.StatusNotFound},
		{"geo-admin", "PUT", path, http.StatusNotFound},
		{"geo-admin", "DELETE", path, http.StatusNotFound},
		{"viewer", "PUT", path, http.StatusForbidden},
		{"admin", "POST", "/v1/secrets/rotate-key", http.StatusForbidden},
	} {
		if r := e.do(tc.who, tc.method, tc.path, body); r.status != tc.want {
			t.Errorf("%s %s as %s: %d, want %d", tc.method, tc.path, tc.who, r.status, tc.want)
		}
	}
	if r := e.do("geo-admin", "GET", "/v1/secrets", nil); r.status != http.StatusOK || bytes.Contains(r.body, []byte(`"db"`)) {
		t.Errorf("geology lists biology's secret: %s", r.body)
	}

	// At rest: sealed, not in the store file.
	v, err := e.store.Get(ctx, "/secrets/biology/db")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(v.Data, []byte(dbPassword)) {
		t.Fatal("the stored secret holds the value")
	}
	if file, _ := os.ReadFile(e.store.Path()); bytes.Contains(file, []byte(dbPassword)) {
		t.Fatal("the store file holds the value")
	}
	// Delivery: the value, and an audit entry for the read.
	data, err := e.srv.SecretData(ctx, "biology", "db", "node/n1")
	if err != nil || data["password"] != dbPassword {
		t.Fatalf("SecretData: %v %v", data, err)
	}
	if a := e.lastAudit(); a.Action != "secret.read" || a.Actor != "node/n1" || bytes.Contains(a.Details, []byte(dbPassword)) {
		t.Errorf("last audit entry %+v %s", a, a.Details)
	}
	// Sealed for its key: copied to another tenant's place it does not open.
	if _, err := e.store.Put(ctx, "/secrets/geology/db", v.Data, store.Any); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.SecretData(ctx, "geology", "db", "node/n1"); !errors.Is(err, secret.ErrSealed) {
		t.Errorf("a moved secret opened: %v", err)
	}
	e.store.Delete(ctx, "/secrets/geology/db", store.Any)

	// Rotation seals every secret again and drops the old key.
	rot, err := e.client("operator").RotateSecretKey(ctx)
	if err != nil || rot.Resealed != 2 || !rot.Retired {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	v2, _ := e.store.Get(ctx, "/secrets/biology/db")
	var stored struct {
		Sealed secret.Sealed `json:"sealed"`
	}
	json.Unmarshal(v2.Data, &stored)
	if stored.Sealed.KeyID != rot.KeyID {
		t.Errorf("sealed with %s after rotating to %s", stored.Sealed.KeyID, rot.KeyID)
	}
	if data, err := e.srv.SecretData(ctx, "biology", "db", "node/n1"); err != nil || data["password"] != dbPassword {
		t.Errorf("after rotation: %v %v", data, err)
	}

	// A tenant with secrets is not deleted under them.
	if r := e.do("operator", "DELETE", "/v1/tenants/biology", nil); r.status != http.StatusConflict {
		t.Errorf("delete a tenant with secrets: %d %s", r.status, r.body)
	}
	if _, err := e.client("admin").DeleteSecret(ctx, "biology", "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client("admin").GetSecret(ctx, "biology", "db"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("deleted secret: %v", err)
	}
}

// TestSecretInvalid: bad secrets are refused naming the field.
func TestSecretInvalid(t *testing.T) {
	t.Parallel()
	kr, _ := secret.Open(filepath.Join(t.TempDir(), "secrets.key"))
	e := newEnvWith(t, func(c *server.Config) { c.Secrets = kr }).seed()
	for _, tc := range []struct {
		path string
		body []byte
		want string
	}{
		{"/v1/tenants/biology/secrets/x", secretJSON("biology", "x", map[string]string{"../etc": "v"}), "spec.data"},
		{"/v1/tenants/biology/secrets/x", secretJSON("biology", "x", nil), "spec.data: missing"},
		{"/v1/tenants/biology/secrets/x", secretJSON("geology", "x", map[string]string{"k": "v"}), "metadata.tenant"},
		{"/v1/tenants/biology/secrets/x", []byte(`{"apiVersion":"rung.dev/v1","kind":"Secret","metadata":{"name":"x","tenant":"biology"},"spec":{"data":{"k":"v"}},"extra":1}`), "unknown field"},
		{"/v1/tenants/biology/secrets/x", []byte(`{"apiVersion":"rung.dev/v1","kind":"Secret",`), "malformed JSON"},
	} {
		r := e.do("admin", "PUT", tc.path, tc.body)
		we := r.error(t)
		if r.status/100 != 4 || !strings.Contains(we.Message+strings.Join(we.Details, " "), tc.want) {
			t.Errorf("%s: %d %q %q, want %q", tc.body, r.status, we.Message, we.Details, tc.want)
		}
	}
	// Without a keyring the server stores no secrets.
	e2 := newEnv(t).seed()
	if r := e2.do("admin", "PUT", "/v1/tenants/biology/secrets/x", secretJSON("biology", "x", map[string]string{"k": "v"})); r.status != http.StatusServiceUnavailable {
		t.Errorf("no keyring: %d", r.status)
	}
}
