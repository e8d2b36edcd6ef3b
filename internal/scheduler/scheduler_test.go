package scheduler_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// problem decodes and validates YAML manifests into a Problem.
func problem(t *testing.T, manifests string) *scheduler.Problem {
	t.Helper()
	set, err := v1.Decode("test.yaml", []byte(manifests))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := set.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	rules, err := tenancy.FromPolicies(set.Policies)
	if err != nil {
		t.Fatalf("compile rules: %v", err)
	}
	p, err := scheduler.NewProblem(set, rules, topology.DefaultRuntimes)
	if err != nil {
		t.Fatalf("problem: %v", err)
	}
	return p
}

// summary renders placements as "tenant/wl[i] tier node", sorted.
func summary(res *scheduler.Result) []string {
	var out []string
	for _, p := range res.Placements {
		out = append(out, fmt.Sprintf("%s[%d] %s %s", p.Workload, p.Replica, p.Tier, p.Node))
	}
	slices.Sort(out)
	return out
}

func node(name, domains, runtimes string) string {
	s := fmt.Sprintf("  - name: %s\n    capacity: {cpu: 16, memory: 64Gi}\n", name)
	if domains != "" {
		s += "    domains: {" + domains + "}\n"
	}
	if runtimes != "" {
		s += "    runtimes: [" + runtimes + "]\n"
	}
	return s
}

func topo(nodes ...string) string {
	return "apiVersion: rung.dev/v1\nkind: Topology\nmetadata: {name: t}\nspec:\n  nodes:\n" + strings.Join(nodes, "")
}

func tenant(name, spec string) string {
	return fmt.Sprintf("---\napiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: %s}\nspec: {%s}\n", name, spec)
}

// workload renders a Workload; spec lines are appended, and replace the
// default resources when they set their own.
func workload(tenant, name, spec string) string {
	res := "  resources: {cpu: 1, memory: 1Gi}\n"
	if strings.Contains(spec, "resources:") {
		res = ""
	}
	return fmt.Sprintf("---\napiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: %s, tenant: %s}\nspec:\n  image: busybox\n%s%s", name, tenant, res, spec)
}

const allTiers = "container, sandbox, vm"

func TestPlanTiers(t *testing.T) {
	tests := []struct {
		name      string
		manifests string
		want      []string
		reasons   map[string]string // "tenant/wl[i]" → substring of reason
	}{
		{
			name: "same organization shares a kernel in containers (rule 4)",
			manifests: topo(node("h1", "", "")) +
				tenant("bio", "organization: uni") + tenant("geo", "organization: uni") +
				workload("bio", "seq", "") + workload("geo", "rocks", ""),
			want:    []string{"bio/seq[0] container h1", "geo/rocks[0] container h1"},
			reasons: map[string]string{"bio/seq[0]": "rule 4 (same organization) vs geo/rocks", "geo/rocks[0]": "rule 4 (same organization) vs bio/seq"},
		},
		{
			name: "untrusted organizations share a host as vm rather than open another",
			manifests: topo(node("h1", "", allTiers), node("h2", "", allTiers)) +
				tenant("acme", "") + tenant("globex", "") +
				workload("acme", "shop", "") + workload("globex", "api", ""),
			want:    []string{"acme/shop[0] vm h1", "globex/api[0] vm h1"},
			reasons: map[string]string{"acme/shop[0]": "rule 6 (other organization) vs globex/api", "globex/api[0]": "rule 6 (other organization) vs acme/shop"},
		},
		{
			name: "without a vm runtime each organization gets a host of its own",
			manifests: topo(node("h1", "", ""), node("h2", "", "")) +
				tenant("acme", "") + tenant("globex", "") +
				workload("acme", "shop", "") + workload("globex", "api", ""),
			want: []string{"acme/shop[0] container h1", "globex/api[0] container h2"},
		},
		{
			name: "a trusted tenant of another organization needs a sandbox (rule 5), its untrusted neighbour a vm",
			manifests: topo(node("h1", "", allTiers)) +
				tenant("vendor", "trust: trusted") + tenant("anon", "") +
				workload("vendor", "app", "") + workload("anon", "toy", ""),
			want: []string{"anon/toy[0] vm h1", "vendor/app[0] sandbox h1"},
		},
		{
			name: "restricted data never shares hardware with another tenant (rule 1)",
			manifests: topo(node("h1", "", allTiers), node("h2", "", allTiers)) +
				tenant("gov", "") + tenant("acme", "") +
				workload("gov", "tax", "  dataClass: restricted\n") + workload("acme", "shop", "  replicas: 2\n"),
			want: []string{"acme/shop[0] container h2", "acme/shop[1] container h2", "gov/tax[0] container h1"},
		},
		{
			name: "different data classes of one tenant need a vm (rule 2 (different class or privilege))",
			manifests: topo(node("h1", "", allTiers)) +
				tenant("acme", "") +
				workload("acme", "web", "  dataClass: public\n") + workload("acme", "db", "  dataClass: confidential\n"),
			want:    []string{"acme/db[0] vm h1", "acme/web[0] vm h1"},
			reasons: map[string]string{"acme/db[0]": "rule 2 (different class or privilege) vs acme/web"},
		},
		{
			name: "a tenant floor raises the tier and says so",
			manifests: topo(node("h1", "", "")) +
				tenant("anon", "isolation: {minimum: sandbox}") + workload("anon", "toy", ""),
			want:    []string{"anon/toy[0] sandbox h1"},
			reasons: map[string]string{"anon/toy[0]": "tenant anon minimum sandbox"},
		},
		{
			name: "a host floor takes a host of its own",
			manifests: topo(node("h1", "", "container, host"), node("h2", "", "container, host")) +
				tenant("bank", "") + tenant("shop", "") +
				workload("bank", "ledger", "  isolation: {minimum: host}\n") + workload("shop", "web", "  replicas: 2\n"),
			want: []string{"bank/ledger[0] host h1", "shop/web[0] container h2", "shop/web[1] container h2"},
		},
		{
			name: "VM nodes on one host are a vm boundary between them",
			manifests: topo(node("h1", "", ""),
				"  - {name: h1-vm1, host: h1, capacity: {cpu: 4, memory: 8Gi}}\n",
				"  - {name: h1-vm2, host: h1, capacity: {cpu: 4, memory: 8Gi}}\n") +
				tenant("acme", "") + tenant("globex", "") +
				workload("acme", "shop", "  spread: [{level: vm, maxPerDomain: 1}]\n") +
				workload("globex", "api", "  spread: [{level: vm, maxPerDomain: 1}]\n"),
			want: []string{"acme/shop[0] container h1-vm1", "globex/api[0] container h1-vm2"},
		},
		{
			name: "a dedicated tenant keeps its hosts to itself",
			manifests: topo(node("h1", "", ""), node("h2", "", "")) +
				tenant("bio", "organization: uni, dedicated: true") + tenant("geo", "organization: uni") +
				workload("bio", "seq", "") + workload("geo", "rocks", ""),
			want: []string{"bio/seq[0] container h1", "geo/rocks[0] container h2"},
		},
		{
			name: "an operator rule comes before the table",
			manifests: topo(node("h1", "", allTiers), node("h2", "", allTiers)) +
				tenant("bank", "organization: bank") + tenant("branch", "organization: bank") +
				workload("bank", "ledger", "") + workload("branch", "teller", "") +
				"---\napiVersion: rung.dev/v1\nkind: Policy\nmetadata: {name: site}\nspec:\n  rules:\n" +
				"  - name: bank-own-hardware\n    when: 'victim.tenant.organization == \"bank\" && attacker.tenant.name != victim.tenant.name'\n    require: host\n",
			want: []string{"bank/ledger[0] container h1", "branch/teller[0] container h2"},
		},
		{
			name: "hard anti-affinity and spread",
			manifests: topo(node("h1", "rack: r1", ""), node("h2", "rack: r1", ""), node("h3", "rack: r2", "")) +
				tenant("acme", "") +
				workload("acme", "db", "  replicas: 2\n  spread: [{level: rack, minDomains: 2}]\n") +
				workload("acme", "web", "  affinity: [{workload: db, op: \"!=\", level: host}]\n"),
			want: []string{"acme/db[0] container h1", "acme/db[1] container h3", "acme/web[0] container h2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := problem(t, tt.manifests)
			res, err := scheduler.Plan(p, scheduler.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Unplaced) > 0 {
				t.Errorf("unplaced: %+v", res.Unplaced)
			}
			if diff := cmp.Diff(tt.want, summary(res)); diff != "" {
				t.Errorf("placements (-want +got):\n%s", diff)
			}
			for key, want := range tt.reasons {
				found := false
				for _, pl := range res.Placements {
					if fmt.Sprintf("%s[%d]", pl.Workload, pl.Replica) == key {
						found = true
						if !strings.Contains(pl.Reason, want) {
							t.Errorf("%s reason = %q, want it to contain %q", key, pl.Reason, want)
						}
					}
				}
				if !found {
					t.Errorf("%s not placed", key)
				}
			}
		})
	}
}

func TestPlanUnplacedReasons(t *testing.T) {
	tests := []struct {
		name      string
		manifests string
		want      []string // substrings expected among the reasons of replica 0
	}{
		{
			name: "spread needs more datacenters than exist",
			manifests: topo(node("h1", "datacenter: dc1", ""), node("h2", "datacenter: dc2", "")) +
				tenant("acme", "") + workload("acme", "db", "  replicas: 3\n  spread: [{level: datacenter, minDomains: 3}]\n"),
			want: []string{"spread datacenter: needs 3 domains, 2 exist; smallest change: 1 more datacenter"},
		},
		{
			name: "composed spreads name the distinct zone",
			manifests: topo(node("h1", "datacenter: dc1, seismic: low", ""), node("h2", "datacenter: dc2, seismic: low", "")) +
				tenant("acme", "") + workload("acme", "db", "  replicas: 2\n  spread: [{level: datacenter, minDomains: 2}, {level: seismic, minDomains: 2}]\n"),
			want: []string{"spread seismic: needs 2 domains, 1 exist; smallest change: 1 more seismic with a distinct datacenter"},
		},
		{
			name: "no node runs the floor's tier",
			manifests: topo(node("h1", "", "")) +
				tenant("acme", "isolation: {minimum: vm}") + workload("acme", "db", ""),
			want: []string{"runtime: removed 1 of 1 nodes", "smallest change: add vm to the runtimes of a node"},
		},
		{
			name: "capacity shortfall names the smallest change",
			manifests: topo(node("h1", "", "")) +
				tenant("acme", "") + workload("acme", "db", "  replicas: 2\n  resources: {cpu: 10, memory: 1Gi}\n"),
			want: []string{"capacity: removed 1 of 1 nodes", "smallest change: free cpu 4 more on node h1"},
		},
		{
			name: "restricted data and no free host",
			manifests: topo(node("h1", "", allTiers)) +
				tenant("gov", "") + tenant("acme", "") +
				workload("gov", "tax", "  dataClass: restricted\n") + workload("acme", "shop", ""),
			want: []string{"tenancy: removed 1 of 1 nodes"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := scheduler.Plan(problem(t, tt.manifests), scheduler.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Unplaced) == 0 {
				t.Fatalf("everything placed: %v", summary(res))
			}
			got := strings.Join(res.Unplaced[0].Reasons, "\n")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("reasons:\n%s\nwant a line containing %q", got, w)
				}
			}
		})
	}
}

func TestPlanDeterministic(t *testing.T) {
	m := topo(node("h1", "rack: r1", allTiers), node("h2", "rack: r1", allTiers), node("h3", "rack: r2", allTiers)) +
		tenant("a", "") + tenant("b", "trust: trusted") + tenant("c", "organization: b") +
		workload("a", "x", "  replicas: 3\n") + workload("b", "y", "  replicas: 2\n  spread: [{level: rack, minDomains: 2}]\n") +
		workload("c", "z", "  replicas: 2\n")
	first, err := scheduler.Plan(problem(t, m), scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		again, err := scheduler.Plan(problem(t, m), scheduler.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, again); diff != "" {
			t.Fatalf("run %d differs (-first +again):\n%s", i, diff)
		}
	}
}

func TestRepairAfterFailure(t *testing.T) {
	m := topo(node("h1", "rack: r1", ""), node("h2", "rack: r1", ""), node("h3", "rack: r2", ""), node("h4", "rack: r2", "")) +
		tenant("acme", "") +
		workload("acme", "db", "  replicas: 2\n  spread: [{level: rack, minDomains: 2}]\n") +
		workload("acme", "web", "  replicas: 3\n")
	before, err := scheduler.Plan(problem(t, m), scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := problem(t, m)
	if _, err := p.Topology.MarkDown("rack", "r2"); err != nil {
		t.Fatal(err)
	}
	notes := p.Keep(before)
	after, err := scheduler.Plan(p, scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	was := map[string]scheduler.Placement{}
	for _, pl := range before.Placements {
		was[fmt.Sprintf("%s[%d]", pl.Workload, pl.Replica)] = pl
	}
	for _, pl := range after.Placements {
		if strings.HasPrefix(pl.Node, "h3") || strings.HasPrefix(pl.Node, "h4") {
			t.Errorf("%s[%d] placed on a down node %s", pl.Workload, pl.Replica, pl.Node)
		}
		old := was[fmt.Sprintf("%s[%d]", pl.Workload, pl.Replica)]
		if old.Node == "h1" || old.Node == "h2" {
			if old.Node != pl.Node || old.Tier != pl.Tier {
				t.Errorf("survivor %s[%d] moved: %s/%s → %s/%s", pl.Workload, pl.Replica, old.Node, old.Tier, pl.Node, pl.Tier)
			}
		}
	}
	// The db spread over two racks cannot be met with one rack left.
	found := false
	for _, pr := range append(after.Problems, reasonsOf(after)...) {
		if strings.Contains(pr, "spread rack") {
			found = true
		}
	}
	if !found {
		t.Errorf("lost rack spread not reported; problems %v unplaced %v notes %v", after.Problems, after.Unplaced, notes)
	}
}

func reasonsOf(r *scheduler.Result) []string {
	var out []string
	for _, u := range r.Unplaced {
		out = append(out, u.Reasons...)
	}
	return out
}

func TestExplain(t *testing.T) {
	m := topo(node("h1", "", ""), node("h2", "", "")) +
		tenant("bio", "organization: uni") + tenant("geo", "organization: uni, dedicated: true") +
		workload("geo", "rocks", "") + workload("bio", "seq", "")
	res, err := scheduler.Plan(problem(t, m), scheduler.Options{Explain: "bio/seq"})
	if err != nil {
		t.Fatal(err)
	}
	e := res.Explain
	if e == nil || len(e.Replicas) != 1 {
		t.Fatalf("explain = %+v", e)
	}
	r := e.Replicas[0]
	if !r.Placed || r.Node != "h2" {
		t.Fatalf("replica = %+v", r)
	}
	var h1 *scheduler.NodeVerdict
	for i := range r.Nodes {
		if r.Nodes[i].Node == "h1" {
			h1 = &r.Nodes[i]
		}
	}
	if h1 == nil || !h1.Rejected || h1.Filter != "dedicated" || !strings.Contains(h1.Reason, "dedicated to tenant geo") {
		t.Errorf("h1 verdict = %+v", h1)
	}
}

// TestDetectedRuntimes: when the agents report that no node can boot a VM
// guest, a replica that needs vm is not planned there, even where it ran
// before; the reason names what the agent can't run.
func TestDetectedRuntimes(t *testing.T) {
	m := topo(node("h1", "rack: r1", allTiers), node("h2", "rack: r2", allTiers)) +
		tenant("acme", "") + workload("acme", "db", "  isolation: {minimum: vm}\n") +
		workload("acme", "web", "  replicas: 2\n")
	before, err := scheduler.Plan(problem(t, m), scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"acme/db[0] vm h1"}, slices.DeleteFunc(summary(before), func(s string) bool { return !strings.Contains(s, "/db") })); diff != "" {
		t.Fatalf("before (-want +got):\n%s", diff)
	}
	p := problem(t, m)
	noVM := tenancy.Set(0).With(tenancy.Container).With(tenancy.Sandbox).With(tenancy.Host)
	if notes := p.Topology.Detected(func(string) (tenancy.Set, bool) { return noVM, true }); len(notes) != 2 {
		t.Errorf("notes %q, want one per node", notes)
	}
	notes := p.Keep(before)
	if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "acme/db[0]: node h1 no longer runs vm") }) {
		t.Errorf("keep notes %q, want acme/db[0] re-placed", notes)
	}
	after, err := scheduler.Plan(p, scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range after.Placements {
		if pl.Tier == "vm" {
			t.Errorf("%s[%d] planned at vm on %s, which can't run it", pl.Workload, pl.Replica, pl.Node)
		}
	}
	if len(after.Unplaced) != 1 || !slices.ContainsFunc(after.Unplaced[0].Reasons, func(r string) bool {
		return strings.Contains(r, "its agent can't run [vm]")
	}) {
		t.Errorf("unplaced %+v, want acme/db[0] naming the undetected vm", after.Unplaced)
	}
	if got := len(after.Placements); got != 2 {
		t.Errorf("%d placements, want the two web replicas", got)
	}
}
