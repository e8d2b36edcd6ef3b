package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
)

func TestRules(t *testing.T) {
	e := newEngine(t, Config{Rules: []Rule{
		{ID: "site-no-latest", Title: "Images are pinned", Severity: SeverityHigh, Fix: "use a digest",
			Deny: `workload.image.endsWith(":latest")`},
		{ID: "site-memory-cap", Title: "At most 4Gi per replica", Fix: "ask for less memory",
			Deny: `workload.resources.memory > 4 * 1024 * 1024 * 1024`},
		{ID: "site-confidential-tenants", Title: "Only the bank handles restricted data",
			Deny: `workload.dataClass == "restricted" && tenant.organization != "bank"`},
		{ID: "site-no-ssh", Title: "No ssh in images", On: KindImage, Severity: SeverityLow,
			Deny: `image.packages.exists(p, p.name == "openssh-server")`},
		{ID: "site-fresh", Title: "Images under 90 days", On: KindImage,
			Deny: `image.created < timestamp("2026-01-01T00:00:00Z")`},
		{ID: "site-label", Title: "Images name their owner", On: KindImage,
			Deny: `!("org.opencontainers.image.authors" in image.labels)`},
	}})
	mem := resource.MustParse("8Gi")
	tests := []struct {
		name string
		w    v1.Workload
		want []string
	}{
		{name: "clean", w: workload(nil)},
		{name: "latest", w: workload(func(s *v1.WorkloadSpec) { s.Image = "debian:latest" }), want: []string{"site-no-latest"}},
		{name: "memory", w: workload(func(s *v1.WorkloadSpec) { s.Resources.Memory = &mem }), want: []string{"site-memory-cap"}},
		{name: "restricted", w: workload(func(s *v1.WorkloadSpec) { s.DataClass = v1.DataRestricted }), want: []string{"site-confidential-tenants"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Workload(WorkloadInput{Tenant: tenant(), Workload: tc.w, Now: now})
			if diff := cmp.Diff(tc.want, ids(d.Findings)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if !slices.Contains(d.Checked, "site-no-latest") || slices.Contains(d.Checked, "site-no-ssh") {
				t.Errorf("checked %v: want workload rules only", d.Checked)
			}
		})
	}

	in := goodImage()
	in.Facts.Packages = []Package{{Name: "openssh-server", Version: "1:9.2p1-2"}}
	d := e.Image(in)
	if diff := cmp.Diff([]string{"site-label", "site-no-ssh"}, ids(d.Findings)); diff != "" {
		t.Errorf("image rule findings (-want +got):\n%s", diff)
	}
	in = goodImage()
	in.Facts.Labels = map[string]string{"org.opencontainers.image.authors": "ci"}
	in.Facts.Created = now.AddDate(0, -6, 0)
	if d := e.Image(in); !slices.Equal(ids(d.Findings), []string{"site-fresh"}) {
		t.Errorf("findings %v, want site-fresh", d.Findings)
	}
}

func TestRuleErrors(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		field string
	}{
		{"built-in id", []Rule{{ID: "CIS-5.4", Title: "x", Deny: "false"}}, "id"},
		{"built-in ref id", []Rule{{ID: "PSS-restricted-capabilities", Title: "x", Deny: "false"}}, "id"},
		{"bad id", []Rule{{ID: "1 bad", Title: "x", Deny: "false"}}, "id"},
		{"duplicate", []Rule{{ID: "a", Title: "x", Deny: "false"}, {ID: "a", Title: "x", Deny: "false"}}, "id"},
		{"syntax", []Rule{{ID: "a", Title: "x", Deny: "workload.image =="}}, "deny"},
		{"not bool", []Rule{{ID: "a", Title: "x", Deny: `"yes"`}}, "deny"},
		{"unknown variable", []Rule{{ID: "a", Title: "x", Deny: "image.user == ''"}}, "deny"},
		{"bad kind", []Rule{{ID: "a", Title: "x", On: "node", Deny: "true"}}, "on"},
		{"no title", []Rule{{ID: "a", Deny: "true"}}, "title"},
		{"too long", []Rule{{ID: "a", Title: "x", Deny: strings.Repeat(" ", MaxRuleLength) + "true"}}, "deny"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Rules: tc.rules})
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("err = %v, want ErrInvalidRule", err)
			}
			re, ok := errors.AsType[*RuleError](err)
			if !ok || re.Field != tc.field {
				t.Errorf("err = %v, want a RuleError on %s", err, tc.field)
			}
		})
	}
}

func TestRuleEvalErrorDenies(t *testing.T) {
	e := newEngine(t, Config{Rules: []Rule{{ID: "site-x", Title: "x", Deny: `workload.labels["team"] == "a"`}}})
	d := e.Workload(WorkloadInput{Tenant: tenant(), Workload: workload(nil), Now: now})
	if d.Allowed || len(d.Findings) != 1 || !strings.Contains(d.Findings[0].Detail, "could not be evaluated") {
		t.Errorf("findings %v: want a fail-closed finding", d.Findings)
	}
}

func TestRuleCostLimit(t *testing.T) {
	// Each level of the nested comprehension multiplies the work by 200.
	e := newEngine(t, Config{Rules: []Rule{{ID: "site-slow", Title: "slow",
		Deny: `workload.command.all(a, workload.command.all(b, workload.command.all(c, a + b + c != "")))`}}})
	w := workload(func(s *v1.WorkloadSpec) { s.Command = slices.Repeat([]string{"x"}, 200) })
	d := e.Workload(WorkloadInput{Tenant: tenant(), Workload: w, Now: now})
	if d.Allowed || !strings.Contains(d.Findings[0].Detail, "could not be evaluated") {
		t.Errorf("findings %v: want the cost limit to deny", d.Findings)
	}
}
