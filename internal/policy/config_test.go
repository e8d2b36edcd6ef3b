package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
)

func admissionPolicy(name, maxAge string, rules ...v1.AdmissionRule) v1.Policy {
	return v1.Policy{Metadata: v1.ObjectMeta{Name: name}, Spec: v1.PolicySpec{Admission: v1.Admission{Rules: rules, MaxImageAge: maxAge}}}
}

func TestFromPolicies(t *testing.T) {
	cfg, err := FromPolicies([]v1.Policy{
		admissionPolicy("a", "720h", v1.AdmissionRule{ID: "SITE-replicas", Title: "At most 5", Severity: "high", Deny: "workload.replicas > 5"}),
		admissionPolicy("b", "", v1.AdmissionRule{ID: "SITE-health", Title: "Healthcheck", On: "image", Fix: "add one", Deny: "!image.healthcheck"}),
		admissionPolicy("c", "48h"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Rules: []Rule{
			{ID: "SITE-replicas", Title: "At most 5", Severity: SeverityHigh, Deny: "workload.replicas > 5"},
			{ID: "SITE-health", Title: "Healthcheck", On: "image", Fix: "add one", Deny: "!image.healthcheck"},
		},
		MaxImageAge: 48 * time.Hour,
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("FromPolicies (-want +got):\n%s", diff)
	}
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}

	_, err = FromPolicies([]v1.Policy{admissionPolicy("a", "-1h", v1.AdmissionRule{ID: "X", Title: "x", Severity: "severe", Deny: "true"})})
	if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), "policy a") || !strings.Contains(err.Error(), "admission rule X: severity") {
		t.Errorf("FromPolicies with bad severity and age: %v", err)
	}
}

func TestRegistryAllowList(t *testing.T) {
	e := newEngine(t, Config{})
	ten := tenant()
	ten.Spec.Images.Registries = []string{"registry.example/team/", "localhost:5000/"}
	for _, tt := range []struct {
		image string
		want  string
	}{
		{image: "registry.example/team/api@sha256:0000"},
		{image: "registry.example/team/api:1.2"},
		{image: "localhost:5000/api:1"},
		{image: "registry.example/other/api:1", want: "image registry.example/other/api:1 is not under registry.example/team/, localhost:5000/"},
		{image: "registry.example/team-evil/api:1", want: "image registry.example/team-evil/api:1 is not under registry.example/team/, localhost:5000/"},
		{image: "oci-layout:/tmp/x", want: "image oci-layout:/tmp/x (not a registry reference) is not under registry.example/team/, localhost:5000/"},
	} {
		d := e.Workload(WorkloadInput{Tenant: ten, Workload: workload(func(w *v1.WorkloadSpec) { w.Image = tt.image }), Now: now})
		var got string
		for _, f := range d.Findings {
			if f.ID == "RUNG-registry-allow-list" {
				got = f.Detail
			}
		}
		if got != tt.want {
			t.Errorf("%s: finding %q, want %q", tt.image, got, tt.want)
		}
		if !slices.Contains(d.Checked, "RUNG-registry-allow-list") {
			t.Errorf("%s: RUNG-registry-allow-list not in Checked", tt.image)
		}
	}
	// No allow-list: anything goes.
	d := e.Workload(WorkloadInput{Tenant: tenant(), Workload: workload(func(w *v1.WorkloadSpec) { w.Image = "docker.io/x:1" }), Now: now})
	for _, f := range d.Findings {
		if f.ID == "RUNG-registry-allow-list" {
			t.Errorf("no allow-list: %v", f)
		}
	}
}

func TestTenantBlockSeverity(t *testing.T) {
	ten := tenant()
	if s, err := TenantBlockSeverity(&ten); err != nil || s != DefaultBlockSeverity {
		t.Errorf("default: %v, %v", s, err)
	}
	ten.Spec.Images.BlockSeverity = "critical"
	if s, err := TenantBlockSeverity(&ten); err != nil || s != SeverityCritical {
		t.Errorf("critical: %v, %v", s, err)
	}
}
