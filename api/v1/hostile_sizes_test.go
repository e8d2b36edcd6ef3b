package v1

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const hostileHead = "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: w, tenant: acme}\nspec:\n  image: busybox\n"

// hostileTenant makes the workloads of TestHostileSizes valid but for
// what each case breaks.
const hostileTenant = "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: acme}\n---\n"

// TestHostileSizes feeds the second wave's fields inputs sized to hurt:
// each is refused, naming the limit and the field, with at most a bounded
// number of errors (a request's answer and audit entry stay small), and
// in time linear in the input (a quadratic check of 50,000 volumes would
// not end within the test's timeout). The allowed case: the same fields
// at a sane size load.
func TestHostileSizes(t *testing.T) {
	t.Parallel()
	var ports, volumes, secrets, allow, keys strings.Builder
	// 50,000 volumes: checked each against every other, they would cost
	// billions of steps; the other lists only need to pass their limits.
	for i := range 50000 {
		fmt.Fprintf(&volumes, "{name: v%d, mountPath: /d/%d},", i, i)
		if i < 20000 {
			fmt.Fprintf(&ports, "{port: 0},")
			fmt.Fprintf(&keys, "k%d: v,", i)
		}
		if i < 5000 {
			fmt.Fprintf(&secrets, "{name: s%d, mountPath: /s/%d},", i, i)
			fmt.Fprintf(&allow, "t%d,", i)
		}
	}
	tests := []struct {
		name, doc string
		want      []string // in the first errors
	}{{
		name: "sane",
		doc: hostileHead + "  volumes: [{name: pg, mountPath: /data}]\n  secrets: [{name: db, mountPath: /run/secrets/db}]\n" +
			"  ports: [{port: 8080, allowTenants: [acme]}]\n",
	}, {
		name: "1e6 ports",
		doc:  hostileHead + "  ports: [" + strings.Repeat("{port: 1},", 1000000) + "]\n",
		want: []string{"file has more than 524288 values"},
	}, {
		name: "20,000 bad ports",
		doc:  hostileHead + "  ports: [" + ports.String() + "]\n",
		want: []string{"spec.ports: 20000 ports, more than 1024"},
	}, {
		name: "50,000 volumes",
		doc:  hostileHead + "  volumes: [" + volumes.String() + "]\n",
		want: []string{"spec.volumes: 50000 volumes, more than 16"},
	}, {
		name: "5,000 secrets",
		doc:  hostileHead + "  secrets: [" + secrets.String() + "]\n",
		want: []string{"spec.secrets: 5000 secrets, more than 64"},
	}, {
		name: "5,000 allowed tenants",
		doc:  hostileHead + "  ports: [{port: 8080, allowTenants: [" + allow.String() + "]}]\n",
		want: []string{"spec.ports[0].allowTenants: 5000 tenants, more than 256"},
	}, {
		name: "20,000 secret keys",
		doc:  "apiVersion: rung.dev/v1\nkind: Secret\nmetadata: {name: s, tenant: acme}\nspec:\n  data: {" + keys.String() + "}\n",
		want: []string{"spec.data: 20000 keys, more than 64"},
	}, {
		name: "deep placement",
		doc:  hostileHead + "  placement: {domains: {region: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "}}\n",
		want: []string{"exceeded max depth"},
	}, {
		name: "alias bomb in a secret",
		doc: "apiVersion: rung.dev/v1\nkind: Secret\nmetadata: {name: s, tenant: acme}\nspec:\n  data:\n" +
			"    a: &a [x, x, x, x, x, x, x, x, x]\n    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
			"    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n    e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
		want: []string{"spec.data.e: expected a string, got a list"},
	}, {
		name: "aliased secret values",
		doc: "apiVersion: rung.dev/v1\nkind: Secret\nmetadata: {name: s, tenant: acme}\nspec:\n  data:\n" +
			"    a: &a " + strings.Repeat("x", 60000) + "\n    b: *a\n    c: *a\n",
		want: []string{"spec.data.b: YAML alias *a is not allowed"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Decode("m.yaml", []byte(hostileTenant+tt.doc))
			if err == nil {
				err = set.Validate()
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("the sane manifest: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v, want ErrInvalid", err)
			}
			fes := unwrapErrs(err)
			if len(fes) > maxErrors+1 {
				t.Errorf("%d errors, want at most %d", len(fes), maxErrors+1)
			}
			msg := err.Error()
			if len(msg) > 64<<10 {
				t.Errorf("the error is %d bytes", len(msg))
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors lack %q:\n%.2000s", w, msg)
				}
			}
		})
	}
}

// TestHostileFileSize: a 100 MB manifest is refused after reading at most
// MaxFileSize+1 bytes of it, naming the limit; a small one beside it loads.
func TestHostileFileSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(hostileTenant + "# "); err != nil {
		t.Fatal(err)
	}
	// Sparse: 100 MB that cost no disk.
	if err := f.Truncate(100 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "file is larger than 16 MiB") || !strings.Contains(err.Error(), "split it") {
		t.Errorf("100 MB manifest: %v", err)
	}
	small := filepath.Join(dir, "small.yaml")
	if err := os.WriteFile(small, []byte(hostileTenant), 0o644); err != nil {
		t.Fatal(err)
	}
	if set, err := Load(small); err != nil || len(set.Tenants) != 1 {
		t.Errorf("small manifest: %v", err)
	}
}
