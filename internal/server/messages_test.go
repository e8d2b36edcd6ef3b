package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestMalformedJSON: a broken JSON body is reported as JSON, with where,
// not as a YAML error; the same object as valid JSON or YAML is accepted.
func TestMalformedJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	const path = "/v1/tenants/biology/workloads/j"
	for name, body := range map[string]string{
		"truncated":      `{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"j"`,
		"trailing comma": "{\"apiVersion\":\"rung.dev/v1\",\n\"kind\":\"Workload\",}",
		"bare word":      `{"apiVersion": rung}`,
	} {
		r := e.do("admin", "PUT", path, []byte(body))
		msg := r.error(t).Message
		if r.status != http.StatusBadRequest || !strings.Contains(msg, "malformed JSON at line") || strings.Contains(strings.ToLower(msg), "yaml:") {
			t.Errorf("%s: %d %q", name, r.status, msg)
		}
	}
	if r := e.do("admin", "PUT", path, workloadJSON("biology", "j", 1)); r.status != http.StatusCreated {
		t.Errorf("valid JSON: %d %s", r.status, r.body)
	}
	yaml := "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: y, tenant: biology}\nspec: {image: busybox:latest, resources: {cpu: 100m, memory: 64Mi}}\n"
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/y", []byte(yaml)); r.status != http.StatusCreated {
		t.Errorf("valid YAML: %d %s", r.status, r.body)
	}
}

// TestForbiddenNamesTenant: a 403 says which token, of which tenant, was
// refused what, and which token would do.
func TestForbiddenNamesTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	for _, tc := range []struct {
		who, method, path string
		body              []byte
		want              []string
	}{
		{"viewer", "PUT", "/v1/tenants/biology/workloads/x", workloadJSON("biology", "x", 1),
			[]string{"(tenant-viewer of tenant biology) may not apply workloads of tenant biology", "tenant-admin token of biology"}},
		{"admin", "PUT", "/v1/tenants/biology", []byte(`{}`),
			[]string{"(tenant-admin of tenant biology) may not apply tenants", "an operator token"}},
		{"admin", "GET", "/v1/topologies", nil, []string{"(tenant-admin of tenant biology) may not list topologies"}},
		{"admin", "GET", "/metrics", nil, []string{"may not get metrics"}},
	} {
		r := e.do(tc.who, tc.method, tc.path, tc.body)
		msg := r.error(t).Message
		if r.status != http.StatusForbidden {
			t.Errorf("%s %s as %s: %d %s", tc.method, tc.path, tc.who, r.status, msg)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s %s as %s: %q lacks %q", tc.method, tc.path, tc.who, msg, w)
			}
		}
	}
}
