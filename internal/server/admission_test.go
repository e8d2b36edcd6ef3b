package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server/wire"
)

// TestAdmissionPolicyRules: the stored Policies' admission rules add to
// the built-in checks at apply time; a rule that does not compile, or that
// reuses a built-in ID, is refused when the Policy is applied.
func TestAdmissionPolicyRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	put := func(who, path, body string) response { return e.do(who, "PUT", path, []byte(body)) }
	policy := func(rules string) string {
		return `{"apiVersion":"rung.dev/v1","kind":"Policy","metadata":{"name":"admission"},"spec":{"admission":{"rules":[` + rules + `]}}}`
	}
	workload := func(name string, replicas int, caps string) string {
		return fmt.Sprintf(`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":%q,"tenant":"biology"},"spec":{"image":"busybox:latest","replicas":%d,"privilege":"elevated","capabilities":[%s],"resources":{"cpu":"100m"}}}`, name, replicas, caps)
	}

	// Bad CEL: refused, naming the rule and the CEL error.
	r := put("operator", "/v1/policies/admission", policy(`{"id":"SITE-bad","title":"Bad","deny":"workload.replicas >"}`))
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("bad CEL: %d %s, want 422", r.status, r.body)
	}
	if we := r.error(t); we.Code != wire.CodeInvalid || !strings.Contains(we.Message, "SITE-bad") || !strings.Contains(we.Message, "deny") {
		t.Errorf("bad CEL: %+v", we)
	}
	// A built-in check's ID cannot be taken over (and so not removed).
	r = put("operator", "/v1/policies/admission", policy(`{"id":"CIS-5.4","title":"Anything goes","deny":"false"}`))
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "built-in") {
		t.Fatalf("built-in ID: %d %s, want 422 naming the built-in", r.status, r.body)
	}
	// A bad maxImageAge is a manifest error.
	r = e.do("operator", "PUT", "/v1/policies/admission", []byte(
		`{"apiVersion":"rung.dev/v1","kind":"Policy","metadata":{"name":"admission"},"spec":{"admission":{"maxImageAge":"30d"}}}`))
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "maxImageAge") {
		t.Fatalf("bad maxImageAge: %d %s", r.status, r.body)
	}

	if r := put("admin", "/v1/tenants/biology/workloads/six", workload("six", 6, "")); r.status != made {
		t.Fatalf("6 replicas before the rule: %d %s", r.status, r.body)
	}
	r = put("operator", "/v1/policies/admission", policy(`{"id":"SITE-max-replicas","title":"At most 5 replicas","severity":"high","fix":"use 5 or fewer","deny":"workload.replicas > 5"}`))
	if r.status != made {
		t.Fatalf("policy: %d %s", r.status, r.body)
	}
	r = put("admin", "/v1/tenants/biology/workloads/seven", workload("seven", 6, ""))
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("6 replicas: %d %s, want 422", r.status, r.body)
	}
	details := strings.Join(r.error(t).Details, "\n")
	if !strings.Contains(details, "SITE-max-replicas") || !strings.Contains(details, "use 5 or fewer") {
		t.Errorf("rejection does not name the rule: %s", details)
	}
	if r := put("admin", "/v1/tenants/biology/workloads/five", workload("five", 5, "")); r.status != made {
		t.Errorf("5 replicas: %d %s", r.status, r.body)
	}
	// Built-ins still run alongside the operator's rule: both findings.
	r = put("admin", "/v1/tenants/biology/workloads/root", workload("root", 6, `"SYS_ADMIN"`))
	details = strings.Join(r.error(t).Details, "\n")
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(details, "CIS-5.4") || !strings.Contains(details, "SITE-max-replicas") {
		t.Errorf("built-in and operator rule: %d %s", r.status, details)
	}
	// The rule changes with the Policy.
	if r := put("operator", "/v1/policies/admission", policy(`{"id":"SITE-max-replicas","title":"At most 8 replicas","deny":"workload.replicas > 8"}`)); r.status != http.StatusOK {
		t.Fatalf("policy update: %d %s", r.status, r.body)
	}
	if r := put("admin", "/v1/tenants/biology/workloads/seven", workload("seven", 6, "")); r.status != made {
		t.Errorf("6 replicas after raising the limit: %d %s", r.status, r.body)
	}
}

// TestAdmissionRegistryAllowList: a workload whose image is not under one
// of its tenant's registries is rejected at apply time.
func TestAdmissionRegistryAllowList(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	r := e.do("operator", "GET", "/v1/tenants/biology", nil)
	if r.status != http.StatusOK {
		t.Fatalf("get tenant: %d %s", r.status, r.body)
	}
	var ten v1.Tenant
	if err := json.Unmarshal(r.body, &ten); err != nil {
		t.Fatal(err)
	}
	ten.Spec.Images.Registries = []string{"registry.campus.example/"}
	body, err := json.Marshal(ten)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("operator", "PUT", "/v1/tenants/biology", body); r.status != http.StatusOK {
		t.Fatalf("put tenant: %d %s", r.status, r.body)
	}
	workload := func(name, image string) []byte {
		return fmt.Appendf(nil, `{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":%q,"tenant":"biology"},"spec":{"image":%q,"resources":{"cpu":"100m"}}}`, name, image)
	}
	r = e.do("admin", "PUT", "/v1/tenants/biology/workloads/hub", workload("hub", "docker.io/library/busybox:latest"))
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("image from another registry: %d %s, want 422", r.status, r.body)
	}
	if we := r.error(t); we.Code != wire.CodeRejected || !strings.Contains(strings.Join(we.Details, "\n"), "RUNG-registry-allow-list") {
		t.Errorf("rejection: %+v", we)
	}
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/campus", workload("campus", "registry.campus.example/seq:1")); r.status != made {
		t.Errorf("allowed registry: %d %s", r.status, r.body)
	}
}
