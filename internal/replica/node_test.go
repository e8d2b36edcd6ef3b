package replica_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// node opens a Node in a fresh data dir with the project's busybox image.
func node(t *testing.T) *replica.Node {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "busybox")
	ctx := t.Context()
	n, err := replica.Open(ctx, drivertest.SearchableTempDir(t), replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Images().Pack(ctx, root, "busybox:latest", image.PackOptions{Healthcheck: image.BusyboxHealthcheck()}); err != nil {
		t.Fatal(err)
	}
	return n
}

func status(t *testing.T, out, key string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestRunContainerIsHardened runs a real replica under runc and checks the
// hardening from the live process's own view.
func TestRunContainerIsHardened(t *testing.T) {
	drivertest.RequireBinary(t, "runc")
	n := node(t)
	ctx := t.Context()
	var out, errb bytes.Buffer
	spec := replica.Spec{ID: "bio-seq-0", Tenant: "biology", Tier: tenancy.Container, Image: "busybox:latest",
		Args:      []string{"sh", "-c", "cat /proc/self/status; echo uidmap $(cat /proc/self/uid_map); touch /x 2>/dev/null || echo rofs; exit 7"},
		Resources: topology.Resources{MilliCPU: 500, Memory: 64 << 20, PIDs: 32}}
	exit, err := n.Run(ctx, spec, runtime.IO{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("run: %v (stderr %s)", err, errb.String())
	}
	if exit.Code != 7 {
		t.Errorf("exit code %d, want 7", exit.Code)
	}
	r, err := n.TenantRange("biology")
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for key, want := range map[string]string{"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "0000000000000000", "CapBnd": "0000000000000000"} {
		if got := status(t, s, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if want := fmt.Sprintf("uidmap 0 %d %d", r.HostUID, r.Size); !strings.Contains(s, want) {
		t.Errorf("uid_map: want %q in\n%s", want, s)
	}
	if !strings.Contains(s, "rofs") {
		t.Errorf("root filesystem is writable:\n%s", s)
	}
	// Run cleans up: no bundle left behind.
	if recs, _ := n.Records(); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
}

// TestTenantsGetDisjointRanges checks ranges are stable and never shared.
func TestTenantsGetDisjointRanges(t *testing.T) {
	drivertest.RequireRoot(t)
	n, err := replica.Open(t.Context(), drivertest.SearchableTempDir(t), replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := n.TenantRange("a")
	b, _ := n.TenantRange("b")
	a2, _ := n.TenantRange("a")
	if a != a2 {
		t.Errorf("range of a changed: %v then %v", a, a2)
	}
	if a.Overlaps(b) || a.HostUID == 0 || b.HostUID == 0 {
		t.Errorf("ranges a %v b %v overlap or include root", a, b)
	}
	// A corrupt registry is an error, never a guess.
	if err := os.WriteFile(filepath.Join(n.Dir(), "tenants.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := n.TenantRange("c"); err == nil {
		t.Error("corrupt tenants.json accepted")
	}
}

func TestFailClosed(t *testing.T) {
	n := node(t)
	ctx := context.Background()
	// No guest kernel here: the vm tier refuses; nothing runs weaker.
	_, err := n.Run(ctx, replica.Spec{ID: "vm-0", Tenant: "acme", Tier: tenancy.VM, Image: "busybox:latest", Args: []string{"true"}}, runtime.IO{})
	if !errors.Is(err, replica.ErrUnavailable) {
		t.Errorf("vm tier: err %v, want ErrUnavailable", err)
	}
	if recs, _ := n.Records(); len(recs) != 0 {
		t.Errorf("vm refusal left records: %+v", recs)
	}
	for _, bad := range []replica.Spec{
		{ID: "../x", Tenant: "acme", Tier: tenancy.Container, Image: "busybox:latest"},
		{ID: "ok", Tenant: "Acme/..", Tier: tenancy.Container, Image: "busybox:latest"},
		{ID: "ok", Tenant: "acme", Tier: tenancy.Container, Image: "nope:latest"},
	} {
		if _, err := n.Prepare(ctx, bad); err == nil {
			t.Errorf("Prepare(%+v) accepted", bad)
		}
	}
}

// TestHostTierIsExclusive: a host-tier replica refuses a node that runs
// another tenant's replica.
func TestHostTierIsExclusive(t *testing.T) {
	drivertest.RequireBinary(t, "runc")
	n := node(t)
	ctx := t.Context()
	if err := n.Start(ctx, replica.Spec{ID: "geo-0", Tenant: "geology", Tier: tenancy.Container, Image: "busybox:latest", Args: []string{"sleep", "30"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Remove(context.Background(), "geo-0") })
	st, err := n.State(ctx, "geo-0")
	if err != nil || st.Status != runtime.Running {
		t.Fatalf("state %+v err %v", st, err)
	}
	_, err = n.Prepare(ctx, replica.Spec{ID: "bank-0", Tenant: "bank", Tier: tenancy.Host, Image: "busybox:latest", Args: []string{"true"}})
	if !errors.Is(err, replica.ErrExclusive) {
		t.Errorf("host tier next to another tenant: err %v, want ErrExclusive", err)
	}
	if err := n.Remove(ctx, "geo-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.State(ctx, "geo-0"); !errors.Is(err, replica.ErrNotFound) {
		t.Errorf("after remove: %v, want ErrNotFound", err)
	}
}

// TestAdmissionOnNode: the node re-checks the final runtime spec, so an
// image that runs as root is refused before anything is created.
func TestAdmissionOnNode(t *testing.T) {
	n := node(t)
	ctx := t.Context()
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Images().Pack(ctx, root, "rootbox:latest", image.PackOptions{User: "0:0", Healthcheck: image.BusyboxHealthcheck()}); err != nil {
		t.Fatal(err)
	}
	_, err := n.Prepare(ctx, replica.Spec{ID: "root-0", Tenant: "acme", Tier: tenancy.Container, Image: "rootbox:latest", Args: []string{"true"}})
	if !errors.Is(err, replica.ErrRejected) || !strings.Contains(err.Error(), "CIS-4.1") {
		t.Errorf("root image: err %v, want ErrRejected naming CIS-4.1", err)
	}
	if recs, _ := n.Records(); len(recs) != 0 {
		t.Errorf("rejected replica left records: %+v", recs)
	}
	if left, _ := n.Leftovers(); len(left) != 0 {
		t.Errorf("rejected replica left directories: %v", left)
	}
}

// TestImageAdmissionOnNode: an image that fails a blocking image check
// (here, it runs as root) never runs; one whose only finding is below the
// threshold (no HEALTHCHECK) runs, with the finding kept as a note.
func TestImageAdmissionOnNode(t *testing.T) {
	n := node(t)
	ctx := t.Context()
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Images().Pack(ctx, root, "asroot:latest", image.PackOptions{User: "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Images().Pack(ctx, root, "nocheck:latest", image.PackOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := n.Run(ctx, replica.Spec{ID: "asroot-0", Tenant: "acme", Tier: tenancy.Container, Image: "asroot:latest", Args: []string{"true"}}, runtime.IO{})
	if !errors.Is(err, replica.ErrRejected) || !strings.Contains(err.Error(), "CIS-4.1") {
		t.Errorf("image running as root: err %v, want ErrRejected naming CIS-4.1", err)
	}
	if left, _ := n.Leftovers(); len(left) != 0 {
		t.Errorf("rejected image left directories: %v", left)
	}
	// The decision waits for the audit log: the image's digest and every
	// finding; a retry (the agent's back-off) is the same decision, kept once.
	_, _ = n.Run(ctx, replica.Spec{ID: "asroot-0", Tenant: "acme", Tier: tenancy.Container, Image: "asroot:latest", Args: []string{"true"}}, runtime.IO{})
	ds := n.TakeDecisions()
	_, digest, err := n.Images().Resolve(ctx, "asroot:latest")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Kind != policy.KindImage || ds[0].Allowed || ds[0].Digest != digest.String() || ds[0].Tenant != "acme" ||
		!slices.ContainsFunc(ds[0].Findings, func(f policy.Finding) bool { return f.ID == "CIS-4.1" }) {
		t.Errorf("decisions %+v, want one image decision for %s rejecting with CIS-4.1", ds, digest)
	}
	if again := n.TakeDecisions(); len(again) != 0 {
		t.Errorf("taken twice: %+v", again)
	}

	var out bytes.Buffer
	exit, err := n.Run(ctx, replica.Spec{ID: "nocheck-0", Tenant: "acme", Tier: tenancy.Container, Image: "nocheck:latest", Args: []string{"id", "-u"}}, runtime.IO{Stdout: &out})
	if err != nil || exit.Code != 0 || strings.TrimSpace(out.String()) != "65534" {
		t.Fatalf("image without HEALTHCHECK: exit %+v, %v, output %q; want it to run as 65534", exit, err, out.String())
	}
	ds = n.TakeDecisions()
	if len(ds) != 1 || !ds[0].Allowed || !slices.ContainsFunc(ds[0].Notes, func(f policy.Finding) bool { return f.ID == "CIS-4.6" }) {
		t.Errorf("decisions %+v, want one admitting nocheck:latest with a CIS-4.6 note", ds)
	}
}

// TestDataDirMustBeReachable: a data directory under a parent that other
// users can't traverse would make every replica fail to start with an
// obscure "permission denied"; Open says so up front.
func TestDataDirMustBeReachable(t *testing.T) {
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := replica.Open(t.Context(), filepath.Join(parent, "data"), replica.Options{})
	if !errors.Is(err, replica.ErrInvalid) || !strings.Contains(err.Error(), "chmod o+x "+parent) {
		t.Errorf("Open under a 0700 parent: %v", err)
	}
}

// TestOperatorRulesOnNode: the site's operator rules travel with the
// replica and are enforced on the node too, with the built-ins.
func TestOperatorRulesOnNode(t *testing.T) {
	n := node(t)
	ctx := t.Context()
	rules := &policy.Config{Rules: []policy.Rule{{
		ID: "SITE-no-debug-images", Title: "No debug images", Severity: policy.SeverityHigh,
		Fix: "use the release image", On: policy.KindWorkload, Deny: `workload.image.startsWith("busybox")`,
	}}}
	_, err := n.Prepare(ctx, replica.Spec{ID: "debug-0", Tenant: "acme", Tier: tenancy.Container, Image: "busybox:latest", Args: []string{"true"}, Admission: rules})
	if !errors.Is(err, replica.ErrRejected) || !strings.Contains(err.Error(), "SITE-no-debug-images") {
		t.Errorf("operator rule on the node: err %v, want ErrRejected naming SITE-no-debug-images", err)
	}
	// Without the rule the same replica is admitted.
	if _, err := n.Prepare(ctx, replica.Spec{ID: "debug-1", Tenant: "acme", Tier: tenancy.Container, Image: "busybox:latest", Args: []string{"true"}}); err != nil {
		t.Fatalf("built-ins only: %v", err)
	}
	t.Cleanup(func() { _ = n.Remove(context.Background(), "debug-1") })
}

// TestTwoDataDirsRunTheSameReplica: two nodes in two data directories on
// one machine (rung up and rung demo, say) run a replica of the same ID
// at once, under runc and under runsc, each in a cgroup of its own with
// its own limits. runsc names a sandbox's control socket after its ID
// machine-wide, and cgroups are machine-wide, so neither may carry the
// bare replica ID.
func TestTwoDataDirsRunTheSameReplica(t *testing.T) {
	ctx := t.Context()
	for _, tier := range []tenancy.Tier{tenancy.Container, tenancy.Sandbox} {
		t.Run(tier.String(), func(t *testing.T) {
			a, b := node(t), node(t)
			if !a.Runtimes(ctx).Has(tier) {
				t.Skipf("%s not available here", tier)
			}
			for i, n := range []*replica.Node{a, b} {
				spec := replica.Spec{ID: "lab-twin-0", Tenant: "lab", Tier: tier, Image: "busybox:latest",
					Args:      []string{"sleep", "30"},
					Resources: topology.Resources{MilliCPU: 100, Memory: int64(64+32*i) << 20, PIDs: 32}}
				if err := n.Start(ctx, spec); err != nil {
					t.Fatalf("node %d: start: %v", i, err)
				}
				t.Cleanup(func() { _ = n.Remove(context.WithoutCancel(ctx), spec.ID) })
			}
			var limits [2]int64
			for i, n := range []*replica.Node{a, b} {
				st, err := n.State(ctx, "lab-twin-0")
				if err != nil || st.Status != runtime.Running {
					t.Fatalf("node %d: state %+v, %v; want running", i, st, err)
				}
				// The memory limit each asked for, read from the cgroup of
				// the live process.
				cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
				if err != nil {
					t.Fatal(err)
				}
				var mem string
				for _, line := range strings.Split(string(cg), "\n") {
					if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[1] == "memory" {
						mem = f[2]
					}
				}
				if mem == "" {
					t.Skip("no cgroup v1 memory controller")
				}
				limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", mem, "memory.limit_in_bytes"))
				if err != nil {
					t.Fatal(err)
				}
				spec, err := bundle.Read(st.Bundle)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := strings.TrimSpace(string(limit)), fmt.Sprint(*spec.Linux.Resources.Memory.Limit); got != want {
					t.Errorf("node %d: live memory limit %s in %s, want its spec's %s", i, got, mem, want)
				}
				limits[i] = *spec.Linux.Resources.Memory.Limit
			}
			if limits[0] == limits[1] {
				t.Errorf("both specs ask for %d: the test can't tell the cgroups apart", limits[0])
			}
		})
	}
}
