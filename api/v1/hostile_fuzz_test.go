package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// secondWaveSeed is a site using every field of the second wave: Volume
// and Secret kinds, spec.volumes (perReplica), spec.secrets, spec.ports
// (publish, nodePort, allowTenants), spec.egress, a Topology's
// spec.network, spec.placement.domains, resources.limits and the noisy
// ladder. The fuzzers start from it and from the docs' and examples'
// manifests.
const secondWaveSeed = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: campus}
spec:
  levels: [building]
  network: {pool: 10.88.0.0/16, nodeBits: 8, nodePorts: 30000-32767}
  nodes:
  - {name: h1, domains: {region: eu-west, building: b1}, capacity: {cpu: 8, memory: 16Gi}}
  - {name: h2, domains: {region: us-east}, capacity: {cpu: 8, memory: 16Gi}, runtimes: [container, sandbox]}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
spec: {trust: untrusted, placement: {domains: {region: [eu-west]}}}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: partner}
---
apiVersion: rung.dev/v1
kind: Policy
metadata: {name: site}
spec:
  network: {egressTenants: [acme], privilegedPortTenants: ["*"]}
  noisy: {threshold: 20, actions: [throttle, report, move], interval: 2s, hold: 3, calm: 10}
---
apiVersion: rung.dev/v1
kind: Volume
metadata: {name: pgdata, tenant: acme}
spec: {size: 10Gi, dataClass: confidential}
---
apiVersion: rung.dev/v1
kind: Secret
metadata: {name: db-password, tenant: acme}
spec: {data: {password: hunter2, tls.key: abc}}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: acme}
spec:
  image: postgres:16
  replicas: 2
  egress: true
  resources: {cpu: 500m, memory: 256Mi, limits: {cpu: 2, memory: 1Gi}}
  placement: {domains: {region: [eu-west], building: [b1]}}
  volumes: [{name: pgdata, mountPath: /var/lib/postgresql, perReplica: true}]
  secrets: [{name: db-password, mountPath: /run/secrets/db}]
  ports:
  - {name: pg, port: 5432, allowTenants: [partner]}
  - {name: http, port: 8080, publish: true, nodePort: 30080}
  - {port: 53, protocol: udp, publish: true}
`

// hostileSeeds are known-nasty shapes on the new fields.
var hostileSeeds = []string{
	secondWaveSeed,
	// Paths and names that try to escape.
	strings.Replace(secondWaveSeed, "/var/lib/postgresql", "/proc/../etc", 1),
	strings.Replace(secondWaveSeed, "/run/secrets/db", "/", 1),
	strings.Replace(secondWaveSeed, "tls.key", "../x", 1),
	strings.Replace(secondWaveSeed, "allowTenants: [partner]", "allowTenants: [nobody, '*', ../acme]", 1),
	strings.Replace(secondWaveSeed, "nodePort: 30080", "nodePort: 7440", 1),
	strings.Replace(secondWaveSeed, "nodePorts: 30000-32767", "nodePorts: 0-99999999999999999999", 1),
	strings.Replace(secondWaveSeed, "nodeBits: 8", "nodeBits: -9223372036854775808", 1),
	strings.Replace(secondWaveSeed, "size: 10Gi", "size: 1e400", 1),
	strings.Replace(secondWaveSeed, "size: 10Gi", "size: -1Ei", 1),
	strings.Replace(secondWaveSeed, "cpu: 2, memory: 1Gi", "cpu: 9999999999999999999999999Ei, memory: 0.0000000001m", 1),
	strings.Replace(secondWaveSeed, "interval: 2s", "interval: 9223372036854775807ns", 1),
	// An alias bomb inside a secret, and deep nesting in placement.
	"apiVersion: rung.dev/v1\nkind: Secret\nmetadata: {name: s, tenant: acme}\nspec:\n  data:\n    a: &a [x, x, x, x]\n    b: &b [*a, *a, *a, *a]\n    c: [*b, *b, *b, *b]\n",
	"apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: w, tenant: acme}\nspec: {placement: {domains: {region: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "}}}\n",
	`{"apiVersion":"rung.dev/v1","kind":"Volume","metadata":{"name":"v","tenant":"acme"},"spec":{"size":"1Gi","dataClass":"restricted"},"status":{"uid":"../../x"}}`,
}

// seedFiles adds every manifest of dirs, and every YAML block of docs/*.md.
func seedFiles(f *testing.F, add func([]byte)) {
	f.Helper()
	for _, dir := range []string{"testdata", "../../examples"} {
		err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !isManifest(p) {
				return err
			}
			data, err := os.ReadFile(p)
			if err == nil {
				add(data)
			}
			return err
		})
		if err != nil {
			f.Fatal(err)
		}
	}
	docs, _ := filepath.Glob("../../docs/*.md")
	block := regexp.MustCompile("(?s)```ya?ml\n(.*?)```")
	for _, d := range docs {
		data, err := os.ReadFile(d)
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range block.FindAllSubmatch(data, -1) {
			add(m[1])
		}
	}
}

// FuzzSecondWave decodes and validates arbitrary manifests built around
// the second wave's fields: no panic, every problem a *FieldError with a
// fix, every problem of an object naming its field (or, for a top-level
// key, its line), no "report this as a
// bug" error, and validation that neither changes the set nor varies.
// Found crashers live in testdata/fuzz/FuzzSecondWave and replay in every
// go test run.
func FuzzSecondWave(f *testing.F) {
	for _, s := range hostileSeeds {
		f.Add([]byte(s))
	}
	seedFiles(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode("fuzz.yaml", data)
		if s == nil {
			t.Fatal("Decode returned a nil Set")
		}
		checkFieldErrors(t, err)
		before, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		first := s.Validate()
		checkFieldErrors(t, first)
		if after, _ := json.Marshal(s); !bytes.Equal(before, after) {
			t.Fatalf("Validate changed the set:\n%s\n---\n%s", before, after)
		}
		if again := s.Validate(); errString(again) != errString(first) {
			t.Fatalf("Validate is not deterministic:\n%v\n---\n%v", first, again)
		}
		// Each object validated on its own agrees with nothing worse than
		// a FieldError either.
		for i := range s.Volumes {
			checkFieldErrors(t, s.Volumes[i].Validate())
		}
		for i := range s.Secrets {
			checkFieldErrors(t, s.Secrets[i].Validate())
		}
	})
}

// checkFieldErrors fails unless every error joined in err is a *FieldError
// that says what is wrong and how to fix it, names the field when it is
// about an object, and is not a decoder bug.
func checkFieldErrors(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		fe, ok := e.(*FieldError)
		switch {
		case !ok:
			t.Fatalf("%T %v is not a *FieldError", e, e)
		case !errors.Is(fe, ErrInvalid):
			t.Fatalf("%v does not match ErrInvalid", fe)
		case fe.Msg == "" || fe.Fix == "":
			t.Fatalf("%q: no message or no fix", fe.Error())
		case strings.Contains(fe.Fix, "bug in rung"):
			t.Fatalf("decoder bug: %v", fe)
		case fe.Kind != "" && fe.Field == "" && fe.Line == 0:
			// A top-level key's problem names its line, not a field.
			t.Fatalf("%q is about a %s but names no field and no line", fe.Error(), fe.Kind)
		case len(fe.Error()) > 4096:
			t.Fatalf("error of %d bytes: an input's size must not flow into messages", len(fe.Error()))
		}
	}
}
