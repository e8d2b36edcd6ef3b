package tenancy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"cel.dev/cel-go/cel"
	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/golden"
)

func TestCompileDesignExample(t *testing.T) {
	m := mustCompile(t, []v1.Rule{{
		Name:    "bank-needs-own-hardware",
		When:    `victim.tenant.organization == "bank" && attacker.tenant.name != victim.tenant.name`,
		Require: v1.TierHost,
	}})
	if len(m) != 1 {
		t.Fatalf("Compile returned %d matchers, want 1", len(m))
	}
	if got := m[0].Name(); got != "bank-needs-own-hardware" {
		t.Errorf("Name() = %q", got)
	}
	if got := m[0].Require(); got != Host {
		t.Errorf("Require() = %v, want host", got)
	}
}

func TestCompileNoRules(t *testing.T) {
	m, err := Compile(nil)
	if err != nil || len(m) != 0 {
		t.Errorf("Compile(nil) = %v, %v; want no matchers, no error", m, err)
	}
}

func TestCompileKeepsOrderAndTiers(t *testing.T) {
	var rules []v1.Rule
	for i, tier := range v1.Tiers {
		rules = append(rules, v1.Rule{Name: fmt.Sprintf("r%d", i), When: "true", Require: tier})
	}
	var got []string
	for _, m := range mustCompile(t, rules) {
		got = append(got, m.Name()+"="+m.Require().String())
	}
	want := []string{"r0=container", "r1=sandbox", "r2=vm", "r3=host"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("matchers (-want +got):\n%s", diff)
	}
}

// Every field of the CEL view reads the right field of the Party, for the
// right side of the pair.
func TestMatchFields(t *testing.T) {
	a := &Party{
		Tenant: "bio", Organization: "uni", Trust: "trusted",
		TenantLabels: map[string]string{"team": "red", "example.com/tier": "gold"},
		Workload:     "seq", WorkloadLabels: map[string]string{"app": "sequencer"},
		DataClass: "confidential", Privilege: "elevated",
	}
	b := &Party{
		Tenant: "retail", Organization: "bank", Trust: "untrusted",
		Workload: "ledger", DataClass: "restricted", Privilege: "standard",
	}
	tests := []struct {
		when string
		want bool
	}{
		{`attacker.tenant.name == "bio" && victim.tenant.name == "retail"`, true},
		{`attacker.tenant.organization == "uni" && victim.tenant.organization == "bank"`, true},
		{`attacker.tenant.trust == "trusted" && victim.tenant.trust == "untrusted"`, true},
		{`attacker.trust == "trusted" && victim.trust == "untrusted"`, true},
		{`attacker.trust == attacker.tenant.trust`, true},
		{`attacker.workload.name == "seq" && victim.workload.name == "ledger"`, true},
		{`attacker.dataClass == "confidential" && victim.dataClass == "restricted"`, true},
		{`attacker.privilege == "elevated" && victim.privilege == "standard"`, true},
		{`attacker.tenant.labels.team == "red"`, true},
		{`attacker.tenant.labels["example.com/tier"] == "gold"`, true},
		{`"team" in attacker.tenant.labels`, true},
		{`"team" in victim.tenant.labels`, false}, // nil map
		{`has(attacker.tenant.labels.team) && !has(victim.tenant.labels.team)`, true},
		{`attacker.workload.labels.app == "sequencer"`, true},
		{`victim.workload.labels.?app.orValue("none") == "none"`, true},
		{`size(attacker.tenant.labels) == 2 && size(victim.workload.labels) == 0`, true},
		{`attacker.tenant.labels.exists(k, k.startsWith("example.com/"))`, true},
		{`attacker.tenant.labels.all(k, attacker.tenant.labels[k] != "")`, true},
		{`victim.tenant.name.startsWith("ret") && victim.tenant.organization.matches("^b.*k$")`, true},
		{`attacker.tenant == victim.tenant`, false},
		{`attacker.tenant == attacker.tenant`, true},
		{`attacker.tenant.name == victim.tenant.name`, false},
		{`victim.dataClass in ["confidential", "restricted"]`, true},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			r := mustCompileOne(t, tt.when)
			got, err := r.Match(a, b)
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			// Both programs agree; Match picked one of them.
			for name, prg := range map[string]cel.Program{"fast": r.fast, "limited": r.limited} {
				if got, err := r.eval(prg, a, b); err != nil || got != tt.want {
					t.Errorf("%s program = %v, %v; want %v", name, got, err, tt.want)
				}
			}
		})
	}
}

// mustCompileOne compiles one rule that requires vm when `when`.
func mustCompileOne(t testing.TB, when string) *rule {
	t.Helper()
	return mustCompile(t, []v1.Rule{{Name: "r", When: when, Require: v1.TierVM}})[0].(*rule)
}

func TestReadsLabels(t *testing.T) {
	tests := []struct {
		when string
		want bool
	}{
		{`victim.tenant.organization == "bank"`, false},
		{`attacker.trust == "trusted" && victim.workload.name.startsWith("db")`, false},
		{`has(victim.tenant.name)`, false},
		{`true`, false},
		{`victim.tenant.labels.team == "red"`, true},
		{`"team" in victim.workload.labels`, true},
		{`has(victim.tenant.labels.team)`, true},
		{`size(attacker.tenant.labels) > 3`, true},
		{`victim.tenant.labels.?team.orValue("") == "red"`, true},
		{`victim.tenant == attacker.tenant`, true},            // equality compares labels
		{`victim != attacker`, true},                          // so does whole-party equality
		{`[victim.workload].exists(w, w.name == "db")`, true}, // an object in a list
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			if got := mustCompileOne(t, tt.when).readsLabels; got != tt.want {
				t.Errorf("readsLabels = %v, want %v", got, tt.want)
			}
		})
	}
}

// A pair outside the bounds the static estimate assumed runs under the
// runtime cost limit; inputs the rule does not read do not matter.
func TestMatchOutsideBounds(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	manyLabels := func(p *Party) {
		p.TenantLabels = map[string]string{}
		for i := range 10 * maxLabels {
			p.TenantLabels[fmt.Sprint("k", i)] = "v"
		}
	}
	tests := []struct {
		name    string
		when    string
		victim  *Party
		wantErr error
	}{
		{
			name:    "long name",
			when:    `victim.tenant.name.contains("pci")`,
			victim:  member("bank", func(p *Party) { p.Tenant = huge }),
			wantErr: ErrCostLimit,
		},
		{
			name:    "long label value",
			when:    `victim.tenant.labels.exists(k, victim.tenant.labels[k].contains("pci"))`,
			victim:  member("bank", func(p *Party) { p.TenantLabels = map[string]string{"a": huge} }),
			wantErr: ErrCostLimit,
		},
		{
			name:    "long label key",
			when:    `victim.tenant.labels.exists(k, k.contains("pci"))`,
			victim:  member("bank", func(p *Party) { p.TenantLabels = map[string]string{huge: "a"} }),
			wantErr: ErrCostLimit,
		},
		{
			name:   "many labels, rule does not read them",
			when:   `victim.tenant.name.contains("pci")`,
			victim: member("bank", manyLabels),
		},
		{
			name:   "long label value, cheap use",
			when:   `victim.tenant.labels.a == "x"`,
			victim: member("bank", func(p *Party) { p.TenantLabels = map[string]string{"a": huge} }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mustCompileOne(t, tt.when).Match(member("a"), tt.victim)
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Errorf("Match error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// Within the assumed bounds the static estimate really is an upper bound,
// so the fast program (no runtime limit) cannot cost more than MaxCost.
// Parties at the bounds and rules that walk every label check it.
func TestEstimateCoversWorstCase(t *testing.T) {
	at := func(name string, fill byte) *Party {
		s := strings.Repeat(name, maxStringLen)[:maxStringLen]
		labels := func() map[string]string {
			l := make(map[string]string, maxLabels)
			for i := range maxLabels {
				k := fmt.Sprintf("%03d", i) + strings.Repeat(string(fill), maxLabelKeyLen-3)
				l[k] = strings.Repeat(string(fill), maxLabelValueLen)
			}
			return l
		}
		return &Party{
			Tenant: s, Organization: s, Trust: s, Workload: s, DataClass: s, Privilege: s,
			TenantLabels: labels(), WorkloadLabels: labels(),
		}
	}
	a, b := at("a", 'a'), at("b", 'b')
	if !withinBounds(a, true) || !withinBounds(b, true) {
		t.Fatal("test parties are not within the bounds")
	}
	for _, when := range []string{
		`victim.tenant.labels.exists(k, k.startsWith("pci.") && victim.tenant.labels[k] == "yes")`,
		`victim.tenant.labels.exists(k, k.contains("pci") || victim.tenant.labels[k].contains("pci"))`,
		`victim.tenant.labels.exists(k, victim.tenant.labels[k].matches("^x+$"))`,
		`attacker.tenant.labels.exists(k, k + attacker.tenant.labels[k] == victim.tenant.name)`,
		`victim.workload.labels.map(k, k + "=" + victim.workload.labels[k]).exists(s, s.endsWith("=pci"))`,
		`victim.tenant == attacker.tenant || victim == attacker`,
		`victim == victim`,
		`victim.tenant.name.contains(attacker.tenant.name) || victim.tenant.organization.matches(attacker.tenant.name)`,
	} {
		t.Run(when, func(t *testing.T) {
			r := mustCompileOne(t, when)
			act := &pair{}
			act.attacker.set(a)
			act.victim.set(b)
			_, det, err := r.limited.Eval(act)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if actual := *det.ActualCost(); actual > r.worst || r.worst > MaxCost {
				t.Errorf("actual cost %d, estimated worst case %d, limit %d", actual, r.worst, MaxCost)
			} else {
				t.Logf("actual cost %d, estimated worst case %d", actual, r.worst)
			}
		})
	}
}

func TestMatchNilParty(t *testing.T) {
	m := mustCompile(t, []v1.Rule{{Name: "r", When: "true", Require: v1.TierVM}})
	if _, err := m[0].Match(nil, member("b")); err == nil {
		t.Error("Match(nil, b): no error")
	}
	if _, err := m[0].Match(member("a"), nil); err == nil {
		t.Error("Match(a, nil): no error")
	}
}

// Compile errors name the rule and the field, collect every faulty rule,
// and read as the golden files in testdata/compile say.
func TestCompileErrors(t *testing.T) {
	ok := v1.Rule{Name: "ok", When: `attacker.trust == "trusted"`, Require: v1.TierSandbox}
	tests := []struct {
		name  string
		rules []v1.Rule
		want  []string // "rule/field" of each error, in order
	}{
		{
			name:  "syntax",
			rules: []v1.Rule{{Name: "r", When: `victim.trust == "trusted" &&`, Require: v1.TierVM}},
			want:  []string{"r/when"},
		},
		{
			name:  "not-bool",
			rules: []v1.Rule{{Name: "r", When: `victim.tenant.organization`, Require: v1.TierVM}},
			want:  []string{"r/when"},
		},
		{
			name:  "dyn-not-bool",
			rules: []v1.Rule{{Name: "r", When: `dyn(victim.trust == "trusted")`, Require: v1.TierVM}},
			want:  []string{"r/when"},
		},
		{
			name:  "unknown-variable",
			rules: []v1.Rule{{Name: "r", When: `neighbour.tenant.name == "acme"`, Require: v1.TierVM}},
			want:  []string{"r/when"},
		},
		{
			name:  "unknown-field",
			rules: []v1.Rule{{Name: "bank-needs-own-hardware", When: `victim.tenant.orgnization == "bank"`, Require: v1.TierHost}},
			want:  []string{"bank-needs-own-hardware/when"},
		},
		{
			name:  "field-on-wrong-object",
			rules: []v1.Rule{{Name: "r", When: `victim.organization == "bank"`, Require: v1.TierHost}},
			want:  []string{"r/when"},
		},
		{
			name:  "type-mismatch",
			rules: []v1.Rule{{Name: "r", When: `victim.tenant.labels == "bank"`, Require: v1.TierHost}},
			want:  []string{"r/when"},
		},
		{
			name:  "empty-when",
			rules: []v1.Rule{{Name: "r", Require: v1.TierVM}},
			want:  []string{"r/when"},
		},
		{
			name:  "too-long",
			rules: []v1.Rule{{Name: "r", When: strings.Repeat("true && ", MaxWhenLength/8) + "true", Require: v1.TierVM}},
			want:  []string{"r/when"},
		},
		{
			name:  "unknown-tier",
			rules: []v1.Rule{{Name: "r", When: "true", Require: "VM"}},
			want:  []string{"r/require"},
		},
		{
			name:  "missing-tier",
			rules: []v1.Rule{{Name: "r", When: "true"}},
			want:  []string{"r/require"},
		},
		{
			name:  "missing-name",
			rules: []v1.Rule{ok, {When: "true", Require: v1.TierVM}},
			want:  []string{"#2/name"},
		},
		{
			name:  "duplicate-name",
			rules: []v1.Rule{ok, ok},
			want:  []string{"ok/name"},
		},
		{
			name: "cost-nested-comprehension",
			rules: []v1.Rule{{Name: "r", Require: v1.TierVM,
				When: `victim.tenant.labels.exists(k, attacker.tenant.labels.exists(j, j == k))`}},
			want: []string{"r/when"},
		},
		{
			name: "cost-huge-literal-comprehension",
			rules: []v1.Rule{{Name: "r", Require: v1.TierVM,
				When: `[0,1,2,3,4,5,6,7,8,9].all(a, [0,1,2,3,4,5,6,7,8,9].all(b, [0,1,2,3,4,5,6,7,8,9].all(c, [0,1,2,3,4,5,6,7,8,9].all(d, a + b + c + d >= 0))))`}},
			want: []string{"r/when"},
		},
		{
			name: "all-errors-collected",
			rules: []v1.Rule{
				ok,
				{Name: "bad-when", When: `victim.tier == "vm"`, Require: v1.TierVM},
				{Name: "bad-both", When: `attacker.trust = "trusted"`, Require: "none"},
				{Name: "bad-require", When: "true", Require: "micro-vm"},
			},
			want: []string{"bad-when/when", "bad-both/require", "bad-both/when", "bad-require/require"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(tt.rules)
			if err == nil {
				t.Fatalf("Compile: no error, %d matchers", len(m))
			}
			if m != nil {
				t.Errorf("Compile returned matchers with an error: %v", m)
			}
			var got []string
			for _, e := range unjoin(err) {
				re, ok := errors.AsType[*RuleError](e)
				if !ok {
					t.Fatalf("error %q is not a *RuleError", e)
				}
				got = append(got, re.Rule+"/"+re.Field)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rule errors (-want +got):\n%s", diff)
			}
			golden.Check(t, filepath.Join("testdata", "compile", tt.name+".golden"), []byte(err.Error()+"\n"))
		})
	}
}

// unjoin splits an errors.Join error into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestCompileTierError(t *testing.T) {
	_, err := Compile([]v1.Rule{{Name: "r", When: "true", Require: "gvisor"}})
	if !errors.Is(err, ErrUnknownTier) {
		t.Errorf("Compile error = %v, want ErrUnknownTier", err)
	}
}

// The static estimate assumes at most maxLabels labels; a party with far
// more is stopped at runtime by the cost limit, failing closed.
func TestMatchCostLimit(t *testing.T) {
	m := mustCompile(t, []v1.Rule{{
		Name: "pci", Require: v1.TierHost,
		When: `victim.tenant.labels.exists(k, k.startsWith("pci.") && victim.tenant.labels[k] == "yes")`,
	}})[0]

	labels := func(n int) map[string]string {
		l := make(map[string]string, n)
		for i := range n {
			l[fmt.Sprintf("example.com/label-%d", i)] = "no"
		}
		return l
	}
	normal := member("bank", func(p *Party) { p.TenantLabels = labels(maxLabels) })
	if ok, err := m.Match(member("a"), normal); err != nil || ok {
		t.Fatalf("Match with %d labels = %v, %v; want false, nil", maxLabels, ok, err)
	}

	hostile := member("bank", func(p *Party) { p.TenantLabels = labels(100 * maxLabels) })
	ok, err := m.Match(member("a"), hostile)
	if !errors.Is(err, ErrCostLimit) {
		t.Fatalf("Match with %d labels = %v, %v; want ErrCostLimit", 100*maxLabels, ok, err)
	}
	if ok {
		t.Error("Match reported a match along with the cost error")
	}
}

// Matchers are used by concurrent scheduler goroutines; pooled activations
// must not leak one pair into another.
func TestMatchConcurrent(t *testing.T) {
	m := mustCompile(t, []v1.Rule{{
		Name: "same", When: `attacker.tenant.name == victim.tenant.name && attacker.workload.labels.n == victim.workload.labels.n`,
		Require: v1.TierVM,
	}})[0]
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				n := fmt.Sprint(g*1000 + i)
				a := member(fmt.Sprint("t", g), func(p *Party) { p.WorkloadLabels = map[string]string{"n": n} })
				b := member(fmt.Sprint("t", g), func(p *Party) { p.WorkloadLabels = map[string]string{"n": n} })
				c := member(fmt.Sprint("t", g), func(p *Party) { p.WorkloadLabels = map[string]string{"n": n + "x"} })
				if ok, err := m.Match(a, b); err != nil || !ok {
					errs <- fmt.Errorf("Match(a, b) = %v, %v; want true", ok, err)
					return
				}
				if ok, err := m.Match(a, c); err != nil || ok {
					errs <- fmt.Errorf("Match(a, c) = %v, %v; want false", ok, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkMatch is one rule for one pair within the bounds (the fast
// program), and the same under the runtime cost limit.
func BenchmarkMatch(b *testing.B) {
	attacker := member("mallory", func(p *Party) { p.TenantLabels = map[string]string{"team": "red"} })
	victim := member("retail", org("bank"), func(p *Party) { p.TenantLabels = map[string]string{"pci.scope": "yes"} })
	for _, bc := range []struct{ name, when string }{
		{"design-example", `victim.tenant.organization == "bank" && attacker.tenant.name != victim.tenant.name`},
		{"single-field", `victim.dataClass == "restricted"`},
		{"labels-exists", `victim.tenant.labels.exists(k, k.startsWith("pci."))`},
	} {
		r := mustCompileOne(b, bc.when)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Match(attacker, victim); err != nil {
					b.Fatal(err)
				}
			}
		})
		// What Match costs for a pair outside the bounds, under the runtime limit.
		b.Run(bc.name+"/cost-limited", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.eval(r.limited, attacker, victim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRequired is one pair through three operator rules that do not
// match, then the default table: the scheduler's common case.
func BenchmarkRequired(b *testing.B) {
	rules := &Rules{Operator: mustCompile(b, []v1.Rule{
		{Name: "bank", When: `victim.tenant.organization == "bank" && attacker.tenant.name != victim.tenant.name`, Require: v1.TierHost},
		{Name: "campus", When: `attacker.tenant.organization == "uni" && victim.tenant.organization == "uni"`, Require: v1.TierSandbox},
		{Name: "pci", When: `"pci.scope" in victim.tenant.labels`, Require: v1.TierHost},
	})}
	a, v := member("mallory"), member("acme")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rules.Required(a, v); err != nil {
			b.Fatal(err)
		}
	}
}
