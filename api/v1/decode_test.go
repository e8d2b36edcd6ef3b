package v1

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/api/resource"
	"rung.dev/rung/internal/golden"
	k8syaml "sigs.k8s.io/yaml"
)

// fieldErrors unpacks an error from Load, Decode or Validate, failing the
// test if any part of it is not a *FieldError matching ErrInvalid.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error does not match ErrInvalid: %v", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error is not an errors.Join: %T %v", err, err)
	}
	var out []*FieldError
	for _, e := range joined.Unwrap() {
		fe, ok := errors.AsType[*FieldError](e)
		if !ok {
			t.Errorf("error is not a *FieldError: %T %v", e, e)
			continue
		}
		if !errors.Is(fe, ErrInvalid) {
			t.Errorf("FieldError does not match ErrInvalid: %v", fe)
		}
		out = append(out, fe)
	}
	return out
}

// TestBadManifests checks the errors for each bad manifest in testdata/bad
// against its golden file; each file holds one class of error.
func TestBadManifests(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.*")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, ".golden") {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := Load(file)
			if err == nil {
				t.Fatal("Load succeeded, want errors")
			}
			for _, fe := range fieldErrors(t, err) {
				if fe.File != file || fe.Msg == "" || fe.Fix == "" {
					t.Errorf("error lacks file, message or fix: %#v", fe)
				}
			}
			got := err.Error() + "\n"
			golden.Check(t, strings.TrimSuffix(file, filepath.Ext(file))+".golden", []byte(got))
		})
	}
}

func TestLoadGood(t *testing.T) {
	for _, path := range []string{"testdata/good", "testdata/dir"} {
		if _, err := Load(path); err != nil {
			t.Errorf("Load(%s): %v", path, err)
		}
	}
}

func qty(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

func intp(i int) *int { return &i }

// dirSet is what testdata/dir holds, with defaults applied.
func dirSet() *Set {
	return &Set{
		Topologies: []Topology{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindTopology},
			Metadata: ObjectMeta{Name: "campus"},
			Spec: TopologySpec{Nodes: []Node{{
				Name:     "h1",
				Domains:  map[string]string{"region": "eu", "datacenter": "dc1", "rack": "r1", "weather": "no"},
				Labels:   map[string]string{"app.kubernetes.io/zone": "north"},
				Capacity: Resources{CPU: qty("32"), Memory: qty("128Gi"), PIDs: 4096},
				Runtimes: []Tier{TierContainer, TierSandbox, TierVM},
			}, {
				Name:     "h1-vm1",
				Host:     "h1",
				Tenant:   "biology",
				Capacity: Resources{CPU: qty("7500m"), Memory: qty("32Gi")},
			}}},
		}},
		Tenants: []Tenant{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindTenant},
			Metadata: ObjectMeta{Name: "biology", Labels: map[string]string{"faculty": "science"}},
			Spec: TenantSpec{
				Organization: "state-university",
				Trust:        TrustTrusted,
				Dedicated:    true,
				Isolation:    Isolation{Minimum: TierSandbox},
				Quota:        Quota{CPU: qty("64"), Memory: qty("256Gi"), Replicas: 200},
				Images:       ImagePolicy{Registries: []string{"registry.campus.example/"}, SignedBy: []string{"keys/ci.pub"}},
			},
		}, {
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindTenant},
			Metadata: ObjectMeta{Name: "geology"},
			Spec:     TenantSpec{Organization: "geology", Trust: TrustUntrusted},
		}},
		Workloads: []Workload{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindWorkload},
			Metadata: ObjectMeta{Name: "sequencer", Tenant: "biology", Labels: map[string]string{"app": "seq"}},
			Spec: WorkloadSpec{
				Image:        "registry.campus.example/seq:1.0",
				Command:      []string{"/bin/seq", "--serve"},
				Args:         []string{"--motto", "😀 café"},
				Env:          map[string]string{"LOG_LEVEL": "debug"},
				Replicas:     intp(0),
				Resources:    Resources{CPU: qty("500m"), Memory: qty("256Mi"), PIDs: 128},
				DataClass:    DataConfidential,
				Privilege:    PrivilegeElevated,
				Capabilities: []string{"NET_BIND_SERVICE"},
				Isolation:    Isolation{Minimum: TierVM},
				Dedicated:    true,
				Spread:       []Spread{{Level: "datacenter", MinDomains: 2, Soft: true}},
				Affinity:     []Affinity{{Label: "app=db", Op: "==", Level: "rack", Soft: true}},
			},
		}, {
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindWorkload},
			Metadata: ObjectMeta{Name: "rocks", Tenant: "geology"},
			Spec:     WorkloadSpec{Replicas: intp(1), DataClass: DataInternal, Privilege: PrivilegeStandard},
		}},
		Policies: []Policy{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindPolicy},
			Metadata: ObjectMeta{Name: "site"},
			Spec: PolicySpec{
				Rules: []Rule{{
					Name:    "bank-needs-own-hardware",
					When:    `victim.tenant.organization == "bank" && attacker.tenant.name != victim.tenant.name`,
					Require: TierHost,
				}},
				TierOverhead: map[Tier]Resources{
					TierSandbox: {Memory: qty("64Mi")},
					TierVM:      {CPU: qty("100m"), Memory: qty("160Mi")},
				},
			},
		}},
	}
}

var ignoreOrigins = cmpopts.IgnoreFields(Set{}, "Origins")

// TestLoadDirectory reads a directory of YAML and JSON files, skipping other
// and hidden files, and checks every decoded field and default.
func TestLoadDirectory(t *testing.T) {
	got, err := Load("testdata/dir")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dirSet(), got, ignoreOrigins); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	for key, want := range map[string]Origin{
		"Topology/campus":                     {File: "testdata/dir/a-topology.yaml", Doc: 1, Line: 1},
		"Topology/campus spec.nodes[1].host":  {File: "testdata/dir/a-topology.yaml", Doc: 1, Line: 12},
		"Tenant/geology":                      {File: "testdata/dir/sub/tenants.yml", Doc: 2, Line: 13},
		"Workload/geology/rocks":              {File: "testdata/dir/workloads.json", Doc: 2, Line: 21},
		"Workload/biology/sequencer spec.env": {File: "testdata/dir/workloads.json", Doc: 1, Line: 9},
		"Policy/site":                         {File: "testdata/dir/policy.yaml", Doc: 1, Line: 1},
	} {
		if diff := cmp.Diff(want, got.Origins[key]); diff != "" {
			t.Errorf("Origins[%q] (-want +got):\n%s", key, diff)
		}
	}
}

// TestRoundTrip writes a loaded set back out, one object per file, and
// loads it again.
func TestRoundTrip(t *testing.T) {
	want, err := Load("testdata/dir")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var objs []any
	for i := range want.Topologies {
		objs = append(objs, &want.Topologies[i])
	}
	for i := range want.Tenants {
		objs = append(objs, &want.Tenants[i])
	}
	for i := range want.Workloads {
		objs = append(objs, &want.Workloads[i])
	}
	for i := range want.Policies {
		objs = append(objs, &want.Policies[i])
	}
	for i, o := range objs {
		data, err := k8syaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		ext := ".yaml"
		if i%2 == 1 {
			ext = ".json"
			if data, err = k8syaml.YAMLToJSON(data); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d%s", i, ext)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, ignoreOrigins); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestMultiDocument decodes the DESIGN.md example as one multi-document
// file.
func TestMultiDocument(t *testing.T) {
	data, err := os.ReadFile("testdata/good/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode("design.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{
		KindTopology: len(s.Topologies), KindTenant: len(s.Tenants),
		KindWorkload: len(s.Workloads), KindPolicy: len(s.Policies),
	}
	want := map[string]int{KindTopology: 1, KindTenant: 2, KindWorkload: 1, KindPolicy: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Origin{File: "design.yaml", Doc: 4, Line: 36}, s.Origins["Workload/biology/sequencer"]); diff != "" {
		t.Errorf("workload origin (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Spread{Level: "rack", MaxPerDomain: 1}, s.Workloads[0].Spec.Spread[1]); diff != "" {
		t.Errorf("spread (-want +got):\n%s", diff)
	}
}

func TestDecodeDefaults(t *testing.T) {
	tests := []struct {
		name, in string
		want     *Set
	}{{
		name: "tenant",
		in:   "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: acme}\n",
		want: &Set{Tenants: []Tenant{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindTenant},
			Metadata: ObjectMeta{Name: "acme"},
			Spec:     TenantSpec{Organization: "acme", Trust: TrustUntrusted},
		}}},
	}, {
		name: "tenant keeps what is set",
		in:   "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: acme}\nspec: {organization: bank, trust: trusted}\n",
		want: &Set{Tenants: []Tenant{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindTenant},
			Metadata: ObjectMeta{Name: "acme"},
			Spec:     TenantSpec{Organization: "bank", Trust: TrustTrusted},
		}}},
	}, {
		name: "workload",
		in:   "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: web, tenant: acme}\nspec:\n",
		want: &Set{Workloads: []Workload{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindWorkload},
			Metadata: ObjectMeta{Name: "web", Tenant: "acme"},
			Spec:     WorkloadSpec{Replicas: intp(1), DataClass: DataInternal, Privilege: PrivilegeStandard},
		}}},
	}, {
		name: "workload with zero replicas keeps them",
		in:   "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: web, tenant: acme}\nspec: {replicas: 0, dataClass: public}\n",
		want: &Set{Workloads: []Workload{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindWorkload},
			Metadata: ObjectMeta{Name: "web", Tenant: "acme"},
			Spec:     WorkloadSpec{Replicas: intp(0), DataClass: DataPublic, Privilege: PrivilegeStandard},
		}}},
	}, {
		name: "empty documents are skipped",
		in:   "---\n# nothing\n---\n---\n",
		want: &Set{},
	}, {
		name: "YAML 1.2 strings stay strings",
		in:   "apiVersion: rung.dev/v1\nkind: Topology\nmetadata: {name: t}\nspec:\n  nodes:\n  - {name: \"007\", domains: {weather: no, seismic: 1.10}}\n",
		want: &Set{Topologies: []Topology{{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindTopology},
			Metadata: ObjectMeta{Name: "t"},
			Spec:     TopologySpec{Nodes: []Node{{Name: "007", Domains: map[string]string{"weather": "no", "seismic": "1.10"}}}},
		}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode("in.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, ignoreOrigins, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeErrors checks the structure of decoding errors, one case per
// class of error.
func TestDecodeErrors(t *testing.T) {
	const head = "apiVersion: rung.dev/v1\nkind: Topology\nmetadata: {name: campus}\n"
	tests := []struct {
		name, file, in string
		want           []*FieldError
	}{{
		name: "unknown field",
		in:   head + "spec:\n  nodes:\n  - name: h1\n    capcity: {cpu: 1}\n",
		want: []*FieldError{{Line: 7, Field: "spec.nodes[0].capcity", Msg: "unknown field", Fix: `did you mean "capacity"?`}},
	}, {
		name: "bad quantity",
		in:   head + "spec:\n  nodes:\n  - name: h1\n    capacity:\n      memory: 12GB\n",
		want: []*FieldError{{Line: 8, Field: "spec.nodes[0].capacity.memory", Msg: `"12GB" is not a quantity`, Fix: "use Kubernetes units such as 512Mi or 4Gi"}},
	}, {
		name: "wrong type",
		in:   head + "spec:\n  nodes: {h1: {}}\n",
		want: []*FieldError{{Line: 5, Field: "spec.nodes", Msg: "expected a list, got a mapping", Fix: `write it as a list: [a, b] or one "- item" per line`}},
	}, {
		name: "duplicate key",
		in:   head + "spec:\n  levels: [a]\n  levels: [b]\n",
		want: []*FieldError{{Line: 6, Field: "spec.levels", Msg: "duplicate key, first set at line 5", Fix: "remove one of them"}},
	}, {
		name: "alias",
		in:   head + "spec:\n  levels: &l [a]\n  nodes: *l\n",
		want: []*FieldError{{Line: 6, Field: "spec.nodes", Msg: "YAML alias *l is not allowed in manifests", Fix: "write the value out in full instead of using & and *"}},
	}, {
		name: "missing apiVersion",
		in:   "kind: Tenant\nmetadata: {name: acme}\n",
		want: []*FieldError{{Line: 1, Kind: "Tenant", Name: "acme", Field: "apiVersion", Msg: "missing", Fix: "add apiVersion: rung.dev/v1"}},
	}, {
		name: "unknown kind",
		in:   "apiVersion: rung.dev/v1\nkind: Tennant\nmetadata: {name: acme}\n",
		want: []*FieldError{{Line: 2, Name: "acme", Field: "kind", Msg: `"Tennant" is not a rung.dev/v1 kind`, Fix: `did you mean "Tenant"?`}},
	}, {
		name: "syntax",
		in:   head + "spec: {\n",
		want: []*FieldError{{Line: 4, Msg: "invalid YAML: did not find expected node content", Fix: "check the syntax on and just before this line"}},
	}, {
		name: "JSON",
		file: "in.json",
		in:   "{\"apiVersion\": \"rung.dev/v1\",\n\"kind\": \"Tenant\",\n\"metadata\": {\"name\": \"acme\", \"name\": \"x\"}}",
		want: []*FieldError{{Line: 3, Kind: "Tenant", Name: "acme", Field: "metadata.name", Msg: "duplicate key, first set at line 3", Fix: "remove one of them"}},
	}, {
		name: "JSON syntax",
		file: "in.json",
		in:   "{\"apiVersion\": \"rung.dev/v1\",\n\"kind\": \"Tenant\",\n}",
		want: []*FieldError{{Line: 3, Msg: "invalid JSON: invalid character '}' looking for beginning of object key string", Fix: "check the syntax on and just before this line"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.file
			if file == "" {
				file = "in.yaml"
			}
			_, err := Decode(file, []byte(tt.in))
			for _, w := range tt.want {
				w.File, w.Doc = file, 1
				if w.Kind == "" && w.Field != "kind" && w.Line > 3 && !strings.HasPrefix(w.Msg, "invalid") {
					w.Kind, w.Name = KindTopology, "campus"
				}
			}
			if diff := cmp.Diff(tt.want, fieldErrors(t, err)); diff != "" {
				t.Errorf("Decode errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLimits feeds hostile input; every case must fail fast with an error.
func TestLimits(t *testing.T) {
	const head = "apiVersion: rung.dev/v1\nkind: Topology\nmetadata: {name: campus}\n"
	bomb := head + "x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
	for i := 1; i < 30; i++ {
		bomb += fmt.Sprintf("x%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	bomb += "spec: {nodes: *a29}\n"
	tests := []struct {
		name, file string
		in         string
		want       string
	}{
		{"file too large", "big.yaml", head + "# " + strings.Repeat("x", MaxFileSize) + "\n", "file is larger than 16 MiB"},
		{"too many documents", "docs.yaml", strings.Repeat("---\n"+head, MaxDocuments+1), "more than 10000 documents in one file"},
		{"long string", "str.yaml", head + "spec: {levels: [" + strings.Repeat("a", MaxStringLen+1) + "]}\n", "string is longer than"},
		{"long list", "list.yaml", head + "spec: {levels: [" + strings.Repeat("a,", MaxItems) + "a]}\n", "more than 100000 items"},
		{"deep YAML", "deep.yaml", head + "spec: {levels: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "}\n", "expected a string, got a list"},
		{"very deep YAML", "deep.yaml", head + "spec: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n", "exceeded max depth"},
		{"deep JSON", "deep.json", `{"spec": ` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "}", "nested deeper than 32 levels"},
		{"alias bomb", "bomb.yaml", bomb, "YAML alias *a29 is not allowed"},
		{"merge key", "merge.yaml", head + "base: &b {levels: [a]}\nspec:\n  <<: *b\n", "merge keys are not allowed"},
		{"many errors", "errors.yaml", head + "spec:\n" + strings.Repeat("  - x\n", 10) + strings.Repeat("x: 1\n", 1000), "more than 100 errors"},
		{"binary", "bin.yaml", "\x00\x01\x02\xff", "invalid YAML"},
		{"too many values", "values.yaml", head + "x: [" + strings.Repeat("a,", maxValues) + "a]\n", "file has more than 524288 values"},
		{"huge negative exponent", "exp.yaml", head + "spec: {nodes: [{name: h1, capacity: {cpu: 1e-999999999}}]}\n", `"1e-999999999" is out of range`},
		{"huge quantity", "qty.yaml", head + "spec: {nodes: [{name: h1, capacity: {memory: 8Ei}}]}\n", `"8Ei" is out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No wall-clock bound: on a loaded CI machine it fails for
			// the wrong reason; the limit's own error proves it stopped
			// the decoder, and the test timeout catches a hang.
			_, err := Decode(tt.file, []byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode: %.300v, want an error containing %q", err, tt.want)
			}
			fieldErrors(t, err)
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, err := Load("testdata/does-not-exist")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing path: %v, want fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Errorf("Load of a missing path matches ErrInvalid: %v", err)
	}
}

// TestLoadReportsAcrossFiles checks that a broken document does not hide
// other problems, and that references to a broken object are not reported
// as undefined.
func TestLoadReportsAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: acme}\nspec: {trust: trusted, colour: blue}\n")
	write("b.yaml", "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: web, tenant: acme}\nspec: {replicas: -1}\n")
	_, err := Load(dir)
	var got []string
	for _, fe := range fieldErrors(t, err) {
		got = append(got, fmt.Sprintf("%s:%d %s", filepath.Base(fe.File), fe.Line, fe.Field))
	}
	want := []string{"a.yaml:4 spec.colour", "b.yaml:4 spec.replicas"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestFieldErrorString(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{
			FieldError{File: "examples/x/topo.yaml", Doc: 1, Line: 12, Kind: KindTopology, Name: "campus", Field: "spec.nodes[3].host", Msg: `node "h9" does not exist`, Fix: "name a physical node from spec.nodes"},
			`examples/x/topo.yaml:12: Topology campus: spec.nodes[3].host: node "h9" does not exist (fix: name a physical node from spec.nodes)`,
		},
		{FieldError{File: "a.yaml", Doc: 2, Msg: "bad"}, "a.yaml: document 2: bad"},
		{FieldError{File: "a.yaml", Msg: "bad", Fix: "fix it"}, "a.yaml: bad (fix: fix it)"},
		{FieldError{Kind: KindTenant, Field: "metadata.name", Msg: "missing"}, "Tenant: metadata.name: missing"},
		{FieldError{Line: 3, Msg: "bad"}, "line 3: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestPaths(t *testing.T) {
	tests := []struct{ path, parent string }{
		{"spec.nodes[3].host", "spec.nodes[3]"},
		{"spec.nodes[3]", "spec.nodes"},
		{"spec", ""},
		{`metadata.labels["app.kubernetes.io/name"]`, "metadata.labels"},
		{`metadata.labels["a\"]b"].x`, `metadata.labels["a\"]b"]`},
		{`["x.y"]`, ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := parentPath(tt.path); got != tt.parent {
			t.Errorf("parentPath(%q) = %q, want %q", tt.path, got, tt.parent)
		}
	}
	if got, want := join(join("metadata", "labels"), "app.kubernetes.io/name"), `metadata.labels["app.kubernetes.io/name"]`; got != want {
		t.Errorf("join = %q, want %q", got, want)
	}
}
