package v1

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func node(name, host string) Node {
	return Node{Name: name, Host: host, Capacity: Resources{CPU: qty("1"), Memory: qty("1Gi")}}
}

func topology(name string, nodes ...Node) Topology {
	return Topology{
		TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindTopology},
		Metadata: ObjectMeta{Name: name},
		Spec:     TopologySpec{Nodes: nodes},
	}
}

func tenant(name string) Tenant {
	return Tenant{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindTenant}, Metadata: ObjectMeta{Name: name}}
}

func workload(tenant, name string, spec WorkloadSpec) Workload {
	return Workload{
		TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindWorkload},
		Metadata: ObjectMeta{Name: name, Tenant: tenant},
		Spec:     spec,
	}
}

// TestValidate checks sets built in Go, without Origins: one case per class
// of cross-object error, each reported as FIELD: MSG (fix: FIX).
func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		set  Set
		want []string
	}{{
		name: "valid",
		set: Set{
			Topologies: []Topology{topology("campus", node("h1", ""), node("h1-vm1", "h1"))},
			Tenants:    []Tenant{tenant("acme")},
			Workloads:  []Workload{workload("acme", "web", WorkloadSpec{Spread: []Spread{{Level: "rack", MaxPerDomain: 1}}})},
		},
	}, {
		name: "VM node cycle",
		set:  Set{Topologies: []Topology{topology("campus", node("h1", ""), node("h1-vm1", "h1-vm2"), node("h1-vm2", "h1-vm1"))}},
		want: []string{
			"Topology campus: spec.nodes[1].host: VM nodes form a cycle h1-vm1 → h1-vm2 → h1-vm1 (fix: name a physical node (one without host) from spec.nodes)",
			"Topology campus: spec.nodes[2].host: VM nodes form a cycle h1-vm2 → h1-vm1 → h1-vm2 (fix: name a physical node (one without host) from spec.nodes)",
		},
	}, {
		name: "VM node on a VM node",
		set:  Set{Topologies: []Topology{topology("campus", node("h1", ""), node("h1-vm1", "h1"), node("h1-vm2", "h1-vm1"))}},
		want: []string{`Topology campus: spec.nodes[2].host: node "h1-vm1" is a VM node on "h1", not a physical node (fix: set host to "h1", a physical node)`},
	}, {
		name: "host does not exist",
		set:  Set{Topologies: []Topology{topology("campus", node("h1", ""), node("h9-vm1", "h9"))}},
		want: []string{`Topology campus: spec.nodes[1].host: node "h9" does not exist (fix: name a physical node (one without host) from spec.nodes)`},
	}, {
		name: "host in another topology",
		set:  Set{Topologies: []Topology{topology("north", node("h1", "")), topology("south", node("h1-vm1", "h1"))}},
	}, {
		name: "duplicate node across topologies",
		set:  Set{Topologies: []Topology{topology("north", node("h1", "")), topology("south", node("h1", ""))}},
		want: []string{`Topology south: spec.nodes[0].name: node "h1" is also defined at another document (Topology north, spec.nodes[0].name) (fix: rename or remove one of them)`},
	}, {
		name: "workload of an undefined tenant",
		set:  Set{Tenants: []Tenant{tenant("acme")}, Workloads: []Workload{workload("acne", "web", WorkloadSpec{})}},
		want: []string{`Workload acne/web: metadata.tenant: workload of an undefined tenant "acne" (fix: did you mean "acme"? or define a Tenant named "acne")`},
	}, {
		name: "workload without tenant",
		set:  Set{Workloads: []Workload{workload("", "web", WorkloadSpec{})}},
		want: []string{`Workload web: metadata.tenant: missing: every workload belongs to a tenant (fix: set metadata.tenant to the name of its Tenant)`},
	}, {
		name: "duplicate workloads of one tenant",
		set: Set{
			Tenants:   []Tenant{tenant("a"), tenant("b")},
			Workloads: []Workload{workload("a", "web", WorkloadSpec{}), workload("b", "web", WorkloadSpec{}), workload("a", "web", WorkloadSpec{})},
		},
		want: []string{`Workload a/web: metadata.name: Workload "a/web" is also defined at another document (fix: rename or remove one of them)`},
	}, {
		name: "operator level",
		set: Set{
			Topologies: []Topology{{
				Metadata: ObjectMeta{Name: "campus"},
				Spec:     TopologySpec{Levels: []string{"building"}, Nodes: []Node{node("h1", "")}},
			}},
			Tenants:   []Tenant{tenant("a")},
			Workloads: []Workload{workload("a", "web", WorkloadSpec{Spread: []Spread{{Level: "building", MinDomains: 2}, {Level: "floor", MinDomains: 2}}})},
		},
		want: []string{`Workload a/web: spec.spread[1].level: unknown level "floor" (fix: use one of region, datacenter, room, rack, host, vm, pdu, switch, weather, seismic, building, or add it to a Topology's spec.levels)`},
	}, {
		name: "VM node contradicts its host",
		set: Set{Topologies: []Topology{topology("campus",
			Node{Name: "h1", Domains: map[string]string{"rack": "r1"}, Capacity: Resources{CPU: qty("1"), Memory: qty("1")}},
			Node{Name: "h1-vm1", Host: "h1", Domains: map[string]string{"rack": "r2", "pdu": "p1"}, Capacity: Resources{CPU: qty("1"), Memory: qty("1")}},
		)}},
		want: []string{`Topology campus: spec.nodes[1].domains.rack: "r2" contradicts host node h1's rack "r1" (fix: remove it; a VM node inherits its host's domains (rack "r1"))`},
	}, {
		name: "admission rules and block severity",
		set: Set{
			Tenants: []Tenant{{Metadata: ObjectMeta{Name: "a"}, Spec: TenantSpec{Images: ImagePolicy{BlockSeverity: "critical"}}}},
			Policies: []Policy{{Metadata: ObjectMeta{Name: "site"}, Spec: PolicySpec{Admission: Admission{
				MaxImageAge: "720h",
				Rules: []AdmissionRule{
					{ID: "SITE-replicas", Title: "At most 5 replicas", Severity: "high", Deny: "workload.replicas > 5"},
					{ID: "SITE-healthcheck", Title: "Images have a healthcheck", On: "image", Deny: "!image.healthcheck"},
				},
			}}}, {Metadata: ObjectMeta{Name: "other"}, Spec: PolicySpec{Admission: Admission{
				Rules: []AdmissionRule{{ID: "SITE-replicas", Title: "again", Severity: "Low", Deny: "true"}},
			}}}},
		},
		want: []string{
			`Policy other: spec.admission.rules[0].id: admission rule "SITE-replicas" is also defined at another document (Policy site, spec.admission.rules[0].id) (fix: rename or remove one of them)`,
			`Policy other: spec.admission.rules[0].severity: "Low" is not a severity (fix: did you mean "low"?)`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, fe := range fieldErrors(t, tt.set.Validate()) {
				got = append(got, fe.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidatePositions checks that errors found after decoding point at
// the line of the field, and that duplicates name both files.
func TestValidatePositions(t *testing.T) {
	a, err := Decode("a.yaml", []byte(`apiVersion: rung.dev/v1
kind: Topology
metadata: {name: campus}
spec:
  nodes:
  - name: h1
    capacity: {cpu: 1, memory: 1Gi}
  - name: h2
    capacity: {cpu: 1, memory: 1Gi}
  - name: h3
    capacity: {cpu: 1, memory: 1Gi}
  - name: h9-vm1
    host: h9
    capacity: {cpu: 1, memory: 1Gi}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Decode("b.yaml", []byte(`apiVersion: rung.dev/v1
kind: Tenant
metadata:
  name: acme
spec:
  trust: vetted
`))
	if err != nil {
		t.Fatal(err)
	}
	a.Merge(b)
	var got []string
	for _, fe := range fieldErrors(t, a.Validate()) {
		got = append(got, fe.Error())
	}
	want := []string{
		`a.yaml:13: Topology campus: spec.nodes[3].host: node "h9" does not exist (fix: name a physical node (one without host) from spec.nodes)`,
		`b.yaml:4: Tenant acme: metadata.name: Tenant "acme" is also defined at a.yaml:18 (fix: rename or remove one of them)`,
		`b.yaml:6: Tenant acme: spec.trust: "vetted" is not a trust level (fix: use one of trusted, untrusted)`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Validate (-want +got):\n%s", diff)
	}
	if err := a.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Validate error %v does not match ErrInvalid", err)
	}
}

func TestMergeKeepsOrigins(t *testing.T) {
	doc := "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: acme}\nspec: {trust: trusted}\n"
	s := &Set{}
	for _, f := range []string{"1.yaml", "2.yaml", "3.yaml"} {
		d, err := Decode(f, []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		s.Merge(d)
	}
	s.Merge(nil)
	want := map[string]Origin{
		"Tenant/acme":               {File: "1.yaml", Doc: 1, Line: 1},
		"Tenant/acme metadata":      {File: "1.yaml", Doc: 1, Line: 3},
		"Tenant/acme metadata.name": {File: "1.yaml", Doc: 1, Line: 3},
		"Tenant/acme spec":          {File: "1.yaml", Doc: 1, Line: 4},
		"Tenant/acme spec.trust":    {File: "1.yaml", Doc: 1, Line: 4},
	}
	for _, n := range []string{"2", "3"} {
		for k, o := range map[string]Origin{"": {Doc: 1, Line: 1}, " metadata": {Doc: 1, Line: 3}, " metadata.name": {Doc: 1, Line: 3}, " spec": {Doc: 1, Line: 4}, " spec.trust": {Doc: 1, Line: 4}} {
			o.File = n + ".yaml"
			want["Tenant/acme#"+n+k] = o
		}
	}
	for k := range s.Origins {
		// apiVersion and kind lines are recorded too; not of interest here.
		if strings.HasSuffix(k, "apiVersion") || strings.HasSuffix(k, "kind") {
			delete(s.Origins, k)
		}
	}
	if diff := cmp.Diff(want, s.Origins); diff != "" {
		t.Errorf("Origins (-want +got):\n%s", diff)
	}
	if len(s.Tenants) != 3 {
		t.Errorf("Merge kept %d tenants, want 3", len(s.Tenants))
	}
}

func TestLevels(t *testing.T) {
	s := &Set{Topologies: []Topology{
		{Spec: TopologySpec{Levels: []string{"building", "floor"}}},
		{Spec: TopologySpec{Levels: []string{"floor", "rack", "moon"}}},
	}}
	want := []string{"region", "datacenter", "room", "rack", "host", "vm", "pdu", "switch", "weather", "seismic", "building", "floor", "moon"}
	if diff := cmp.Diff(want, s.Levels()); diff != "" {
		t.Errorf("Levels (-want +got):\n%s", diff)
	}
	// Levels must not alias the package's built-in lists.
	s.Levels()[0] = "changed"
	if NestedLevels[0] != "region" {
		t.Error("Levels returned the built-in slice")
	}
}

func TestApplyDefaultsIdempotent(t *testing.T) {
	s := &Set{Tenants: []Tenant{tenant("acme")}, Workloads: []Workload{workload("acme", "web", WorkloadSpec{})}}
	s.ApplyDefaults()
	once := *s.Workloads[0].Spec.Replicas
	s.ApplyDefaults()
	if diff := cmp.Diff(1, once); diff != "" {
		t.Errorf("replicas (-want +got):\n%s", diff)
	}
	if got := s.Tenants[0].Spec; got.Organization != "acme" || got.Trust != TrustUntrusted {
		t.Errorf("tenant defaults: %+v", got)
	}
}

func TestNames(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "h1-vm1": true, "0": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, "a.b": false, strings.Repeat("a", 64): false,
	} {
		if got := IsDNSLabel(s); got != want {
			t.Errorf("IsDNSLabel(%q) = %v", s, got)
		}
	}
	for s, want := range map[string]string{"Bio_Logy": "bio-logy", "--": "", "H1": "h1", "a  b": "a-b"} {
		if got := toDNSLabel(s); got != want {
			t.Errorf("toDNSLabel(%q) = %q, want %q", s, got, want)
		}
	}
	for s, want := range map[string]bool{
		"app": true, "app.kubernetes.io/name": true, "a/b/c": false, "/a": false, "a/": false, "Ex.com/a": false, "-a": false,
	} {
		if got := isLabelKey(s); got != want {
			t.Errorf("isLabelKey(%q) = %v", s, got)
		}
	}
}
