package tenancy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
)

// member returns a replica of workload "app" of tenant with the manifest
// defaults of DESIGN §4 (organization = tenant, untrusted, internal,
// standard), then applies mods.
func member(tenant string, mods ...func(*Party)) *Party {
	p := &Party{
		Tenant:       tenant,
		Organization: tenant,
		Trust:        string(v1.TrustUntrusted),
		Workload:     "app",
		DataClass:    string(v1.DataInternal),
		Privilege:    string(v1.PrivilegeStandard),
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func org(o string) func(*Party)         { return func(p *Party) { p.Organization = o } }
func class(c v1.DataClass) func(*Party) { return func(p *Party) { p.DataClass = string(c) } }
func trusted(p *Party)                  { p.Trust = string(v1.TrustTrusted) }
func elevated(p *Party)                 { p.Privilege = string(v1.PrivilegeElevated) }

// defaultTableCases walks the default rule table of DESIGN §2 row by row,
// with the cases where row order matters.
var defaultTableCases = []struct {
	name string
	a, b *Party // a = attacker, b = victim
	want Decision
}{
	// Row 1: b.dataClass == restricted and different tenants → host.
	{
		name: "1: restricted victim of another tenant",
		a:    member("acme"), b: member("bank", class(v1.DataRestricted)),
		want: Decision{Host, "rule 1 (restricted data)"},
	},
	{
		name: "1: restricted victim of another tenant beats everything",
		a:    member("acme", trusted, elevated, org("uni")), b: member("bank", class(v1.DataRestricted), org("uni")),
		want: Decision{Host, "rule 1 (restricted data)"},
	},
	{
		name: "1: both restricted, different tenants of one organization",
		a:    member("bio", org("uni"), class(v1.DataRestricted)), b: member("geo", org("uni"), class(v1.DataRestricted)),
		want: Decision{Host, "rule 1 (restricted data)"},
	},
	{
		name: "1 looks at the victim: restricted attacker, internal victim of another tenant",
		a:    member("bank", class(v1.DataRestricted)), b: member("acme"),
		want: Decision{VM, "rule 2 (different class or privilege)"},
	},
	{
		name: "1 needs different tenants: restricted victim of the same tenant",
		a:    member("bank", class(v1.DataRestricted)), b: member("bank", class(v1.DataRestricted)),
		want: Decision{Container, "rule 3 (same tenant)"},
	},

	// Row 2: different data class or privilege → vm.
	{
		name: "2: different data class within one tenant",
		a:    member("acme"), b: member("acme", class(v1.DataConfidential)),
		want: Decision{VM, "rule 2 (different class or privilege)"},
	},
	{
		name: "2: restricted victim of the same tenant, attacker internal",
		a:    member("bank"), b: member("bank", class(v1.DataRestricted)),
		want: Decision{VM, "rule 2 (different class or privilege)"},
	},
	{
		name: "2: different privilege within one tenant",
		a:    member("acme", elevated), b: member("acme"),
		want: Decision{VM, "rule 2 (different class or privilege)"},
	},
	{
		name: "2: different privilege, victim elevated",
		a:    member("acme"), b: member("acme", elevated),
		want: Decision{VM, "rule 2 (different class or privilege)"},
	},
	{
		name: "2 beats 4: different class, same organization",
		a:    member("bio", org("uni"), class(v1.DataPublic)), b: member("geo", org("uni")),
		want: Decision{VM, "rule 2 (different class or privilege)"},
	},
	{
		name: "2 beats 5: different privilege, trusted attacker of another organization",
		a:    member("vendor", trusted, elevated), b: member("acme"),
		want: Decision{VM, "rule 2 (different class or privilege)"},
	},

	// Row 3: same tenant → container.
	{
		name: "3: same tenant, same class and privilege",
		a:    member("acme"), b: member("acme"),
		want: Decision{Container, "rule 3 (same tenant)"},
	},
	{
		name: "3: same tenant, both elevated and confidential",
		a:    member("acme", elevated, class(v1.DataConfidential)), b: member("acme", elevated, class(v1.DataConfidential)),
		want: Decision{Container, "rule 3 (same tenant)"},
	},

	// Row 4: same organization, different tenants → container.
	{
		name: "4: same organization, different tenants, untrusted",
		a:    member("bio", org("uni")), b: member("geo", org("uni")),
		want: Decision{Container, "rule 4 (same organization)"},
	},
	{
		name: "4: default organization is the tenant's name",
		a:    member("acme-labs", org("acme")), b: member("acme"),
		want: Decision{Container, "rule 4 (same organization)"},
	},

	// Row 5: different organization, a trusted → sandbox.
	{
		name: "5: other organization, trusted attacker",
		a:    member("vendor", trusted), b: member("acme"),
		want: Decision{Sandbox, "rule 5 (trusted other organization)"},
	},
	{
		name: "5 looks at the attacker: trusted victim, untrusted attacker",
		a:    member("acme"), b: member("vendor", trusted),
		want: Decision{VM, "rule 6 (other organization)"},
	},

	// Row 6: otherwise → vm.
	{
		name: "6: other organization, untrusted",
		a:    member("mallory"), b: member("acme"),
		want: Decision{VM, "rule 6 (other organization)"},
	},
	{
		name: "6: empty trust is not trusted",
		a:    member("mallory", func(p *Party) { p.Trust = "" }), b: member("acme"),
		want: Decision{VM, "rule 6 (other organization)"},
	},
}

func TestDefault(t *testing.T) {
	for _, tt := range defaultTableCases {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Default(tt.a, tt.b)); diff != "" {
				t.Errorf("Default (-want +got):\n%s", diff)
			}
		})
	}
}

// Without operator rules, Required is the default table.
func TestRequiredWithoutPolicy(t *testing.T) {
	for _, rules := range []*Rules{{}, {Operator: mustCompile(t, nil)}} {
		for _, tt := range defaultTableCases {
			t.Run(tt.name, func(t *testing.T) { wantRequired(t, rules, tt.a, tt.b, tt.want) })
		}
	}
}

// wantRequired checks that rules.Required(a, b) decides want.
func wantRequired(t *testing.T, rules *Rules, a, b *Party, want Decision) {
	t.Helper()
	got, err := rules.Required(a, b)
	if err != nil {
		t.Fatalf("Required: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Required (-want +got):\n%s", diff)
	}
}

func mustCompile(t testing.TB, rules []v1.Rule) []Matcher {
	t.Helper()
	m, err := Compile(rules)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return m
}

func TestRequiredWithPolicy(t *testing.T) {
	rules := &Rules{Operator: mustCompile(t, []v1.Rule{
		{
			Name:    "bank-needs-own-hardware",
			When:    `victim.tenant.organization == "bank" && attacker.tenant.name != victim.tenant.name`,
			Require: v1.TierHost,
		},
		{
			Name:    "campus-sandbox",
			When:    `attacker.tenant.organization == "state-university" && victim.tenant.organization == "state-university"`,
			Require: v1.TierSandbox,
		},
		{
			// An operator may lower a tier: that is an explicit policy change.
			Name:    "restricted-within-organization",
			When:    `victim.dataClass == "restricted" && attacker.tenant.organization == victim.tenant.organization`,
			Require: v1.TierVM,
		},
	})}
	tests := []struct {
		name string
		a, b *Party
		want Decision
	}{
		{
			name: "operator rule precedes the table",
			a:    member("mallory"), b: member("retail", org("bank")),
			want: Decision{Host, "policy bank-needs-own-hardware"}, // default: rule 6, vm
		},
		{
			name: "operator rule does not match: same tenant",
			a:    member("retail", org("bank")), b: member("retail", org("bank")),
			want: Decision{Container, "rule 3 (same tenant)"},
		},
		{
			name: "operator rule does not match: bank is the attacker",
			a:    member("retail", org("bank")), b: member("mallory"),
			want: Decision{VM, "rule 6 (other organization)"},
		},
		{
			name: "operator rule raises the table",
			a:    member("bio", org("state-university")), b: member("geo", org("state-university")),
			want: Decision{Sandbox, "policy campus-sandbox"}, // default: rule 4, container
		},
		{
			name: "first match wins",
			a:    member("loans", org("bank")), b: member("retail", org("bank"), class(v1.DataRestricted)),
			want: Decision{Host, "policy bank-needs-own-hardware"}, // restricted-within-organization matches too
		},
		{
			name: "operator rule lowers the table",
			a:    member("bio", org("uni")), b: member("geo", org("uni"), class(v1.DataRestricted)),
			want: Decision{VM, "policy restricted-within-organization"}, // default: rule 1, host
		},
		{
			name: "no operator rule matches",
			a:    member("vendor", trusted), b: member("acme"),
			want: Decision{Sandbox, "rule 5 (trusted other organization)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantRequired(t, rules, tt.a, tt.b, tt.want) })
	}
}

func TestRequiredFirstMatchWins(t *testing.T) {
	first := v1.Rule{Name: "first", When: `attacker.tenant.name == "a"`, Require: v1.TierVM}
	second := v1.Rule{Name: "second", When: `victim.tenant.name == "b"`, Require: v1.TierHost}
	never := v1.Rule{Name: "never", When: `false`, Require: v1.TierContainer}
	a, b := member("a"), member("b")
	tests := []struct {
		name  string
		rules []v1.Rule
		want  Decision
	}{
		{name: "first, second", rules: []v1.Rule{first, second}, want: Decision{VM, "policy first"}},
		{name: "second, first", rules: []v1.Rule{second, first}, want: Decision{Host, "policy second"}},
		{name: "never, second, first", rules: []v1.Rule{never, second, first}, want: Decision{Host, "policy second"}},
		{name: "never", rules: []v1.Rule{never}, want: Decision{VM, "rule 6 (other organization)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantRequired(t, &Rules{Operator: mustCompile(t, tt.rules)}, a, b, tt.want)
		})
	}
}

// fakeMatcher is a Matcher with a fixed answer that counts its calls.
type fakeMatcher struct {
	name  string
	ok    bool
	err   error
	calls int
}

func (f *fakeMatcher) Name() string  { return f.name }
func (f *fakeMatcher) Require() Tier { return Container }
func (f *fakeMatcher) Match(_, _ *Party) (bool, error) {
	f.calls++
	return f.ok, f.err
}

// An evaluation error fails closed: no decision, the rule named, and no
// later rule consulted.
func TestRequiredFailsClosed(t *testing.T) {
	errBoom := errors.New("boom")
	broken := &fakeMatcher{name: "broken", err: errBoom}
	later := &fakeMatcher{name: "later", ok: true}
	rules := &Rules{Operator: []Matcher{broken, later}}

	got, err := rules.Required(member("a"), member("b"))
	if !errors.Is(err, errBoom) {
		t.Fatalf("Required error = %v, want errBoom", err)
	}
	if want := "policy rule broken: boom"; err.Error() != want {
		t.Errorf("Required error = %q, want %q", err, want)
	}
	if got != (Decision{}) {
		t.Errorf("Required decision = %+v, want none", got)
	}
	if later.calls != 0 {
		t.Errorf("rule after the failing one was consulted %d times", later.calls)
	}
}

// A CEL rule that fails at runtime (a missing label) fails closed too.
func TestRequiredFailsClosedCEL(t *testing.T) {
	rules := &Rules{Operator: mustCompile(t, []v1.Rule{
		{Name: "team-label", When: `victim.tenant.labels["team"] == "red"`, Require: v1.TierHost},
	})}
	_, err := rules.Required(member("a"), member("b"))
	if err == nil {
		t.Fatal("Required: no error for a missing label")
	}
	for _, want := range []string{"policy rule team-label: ", "attacker a/app, victim b/app", "no such key: team"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Required error = %q, want it to contain %q", err, want)
		}
	}
}
