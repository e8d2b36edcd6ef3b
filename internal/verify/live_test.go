package verify_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/verify"
)

// The end-to-end twins of the fixture tests: real runc and runsc replicas,
// built by bundle.New from a busybox rootfs shifted into a tenant range,
// inspected live while they run. Every property is asserted from the live
// values, not only from Check's verdict.

func newDriver(t *testing.T, kind string) *runtime.OCI {
	t.Helper()
	return newDriverIn(t, kind, filepath.Join(drivertest.SearchableTempDir(t), kind))
}

// newDriverIn makes a runc or runsc driver with Config.Dir dir; its
// runtime state is in dir/state.
func newDriverIn(t *testing.T, kind, dir string) *runtime.OCI {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, kind)
	return drivertest.NewOCI(t, kind, dir)
}

// started runs `sleep 300` in a fresh replica of tenant index tenant with
// the given limits and returns the driver.
func started(t *testing.T, kind, id string, tenant int, opts ...bundle.Opt) *runtime.OCI {
	t.Helper()
	d := newDriver(t, kind)
	all := append([]bundle.Opt{drivertest.Shell("sleep 300"), drivertest.Cgroups(id)}, opts...)
	drivertest.Started(t, d, id, drivertest.BusyboxBundle(t, drivertest.Range(t, tenant), all...))
	return d
}

// hostNamespace is this test process's namespace of type t (the host's).
func hostNamespace(t *testing.T, typ string) string {
	t.Helper()
	l, err := os.Readlink("/proc/self/ns/" + typ)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// nsOf returns a report's namespace link of type typ.
func nsOf(r verify.Report, typ string) verify.Namespace {
	for _, n := range r.Namespaces {
		if n.Type == typ {
			return n
		}
	}
	return verify.Namespace{}
}

// holding starts a replica like started, verifies it live and requires
// every property to hold.
func holding(t *testing.T, kind, id string, tenant int, opts ...bundle.Opt) (*runtime.OCI, verify.Replica) {
	t.Helper()
	d := started(t, kind, id, tenant, opts...)
	rep, err := verify.Host{}.Replica(t.Context(), d, id)
	if err != nil {
		t.Fatal(err)
	}
	requireHolds(t, rep)
	return d, rep
}

func requireHolds(t *testing.T, rep verify.Replica) {
	t.Helper()
	if len(rep.Problems) > 0 {
		t.Errorf("problems: %v", rep.Problems)
	}
	for _, f := range rep.Findings {
		if !f.Holds {
			t.Errorf("%s", f)
		} else {
			t.Logf("%s", f)
		}
	}
	if !rep.Holds() {
		t.Errorf("replica %s does not hold", rep.ID)
	}
}

func TestLiveRunc(t *testing.T) {
	t.Parallel()
	const id = "verify-live-runc"
	tenant := drivertest.Range(t, 40)
	_, rep := holding(t, "runc", id, 40, bundle.WithResources(500, 64<<20, 48))
	if rep.Tier != verify.TierContainer || rep.Status != runtime.Running {
		t.Errorf("tier %s status %s, want container running", rep.Tier, rep.Status)
	}
	if len(rep.Weaknesses) != 0 {
		t.Errorf("container weaknesses %q, want none", rep.Weaknesses)
	}
	p, ok := rep.Primary()
	if !ok || p.Role != verify.RoleInit || p.Report.Pid != rep.Pid {
		t.Fatalf("primary = %+v, %v; want the init, pid %d", p, ok, rep.Pid)
	}
	r := p.Report

	// The live values, property by property.
	base := tenant.HostUID
	if want := (verify.IDs{Real: base, Effective: base, Saved: base, FS: base}); r.UID != want || r.GID != want {
		t.Errorf("host uid %+v gid %+v, want the tenant's base %d (never 0)", r.UID, r.GID, base)
	}
	wantMap := []verify.IDMap{{ContainerID: 0, HostID: base, Size: tenant.Size}}
	if diff := cmp.Diff(wantMap, r.UIDMap); diff != "" {
		t.Errorf("uid_map (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantMap, r.GIDMap); diff != "" {
		t.Errorf("gid_map (-want +got):\n%s", diff)
	}
	if r.Caps != (verify.Caps{}) {
		t.Errorf("capabilities %+v, want every set empty", r.Caps)
	}
	if r.NoNewPrivs != 1 || r.Seccomp != 2 || r.SeccompFilters < 1 {
		t.Errorf("NoNewPrivs %d Seccomp %d filters %d, want 1, 2, ≥1", r.NoNewPrivs, r.Seccomp, r.SeccompFilters)
	}
	for _, typ := range []string{"cgroup", "ipc", "mnt", "net", "pid", "user", "uts"} {
		n := nsOf(r, typ)
		if !n.Private || n.ID == hostNamespace(t, typ) {
			t.Errorf("namespace %s = %+v, want its own (host %s)", typ, n, hostNamespace(t, typ))
		}
	}
	if !r.Root.ReadOnly || !strings.HasSuffix(r.Root.Root, "/rootfs") {
		t.Errorf("root mount %+v, want the bundle's rootfs, read-only", r.Root)
	}
	if len(r.HostMounts) != 0 {
		t.Errorf("host mounts %+v, want none", r.HostMounts)
	}
	wantRes := verify.Resources{MemoryLimit: 64 << 20, MemorySwapLimit: 64 << 20, PidsLimit: 48, CPUQuota: 50000, CPUPeriod: 100000}
	gotRes := verify.Resources{MemoryLimit: r.Resources.MemoryLimit, MemorySwapLimit: r.Resources.MemorySwapLimit,
		PidsLimit: r.Resources.PidsLimit, CPUQuota: r.Resources.CPUQuota, CPUPeriod: r.Resources.CPUPeriod}
	if diff := cmp.Diff(wantRes, gotRes); diff != "" {
		t.Errorf("limits (-want +got):\n%s", diff)
	}
	if r.Resources.PidsCurrent < 1 || r.Resources.MemoryUsage <= 0 || r.Resources.OOMKills != 0 {
		t.Errorf("counters %+v, want a running, never OOM-killed replica", r.Resources)
	}
	if c := cgroupOf(r, "memory"); c.Path != "/rung-test/"+id || c.Dir != "/sys/fs/cgroup/memory/rung-test/"+id {
		t.Errorf("memory cgroup %+v, want /rung-test/%s", c, id)
	}

	// Check is not vacuous on live values: another tenant's range and
	// other limits fail.
	other := verify.Expect(verify.TierContainer, verify.RoleInit, nil)
	other.Range = drivertest.Range(t, 41)
	other.MemoryLimit = 128 << 20
	if got := failing(verify.Check(r, other)); !slices.Equal(got, []verify.Property{verify.PropUIDMap, verify.PropMemory}) {
		t.Errorf("check against tenant 41 with 128Mi fails %v, want uid-map and memory-limit", got)
	}
}

// TestLiveRuncWeakened: a replica whose spec was weakened after bundle.New
// (what a bug or a tampered bundle would run) fails exactly the weakened
// properties, read live.
func TestLiveRuncWeakened(t *testing.T) {
	t.Parallel()
	const id = "verify-live-weak"
	d := newDriver(t, "runc")
	dir := drivertest.BusyboxBundle(t, drivertest.Range(t, 42), drivertest.Shell("sleep 300"), drivertest.Cgroups(id))
	spec, err := bundle.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	spec.Root.Readonly = false
	spec.Process.NoNewPrivileges = false
	spec.Linux.Seccomp = nil
	spec.Linux.Resources.Pids = nil
	caps := []string{"CAP_NET_RAW"}
	spec.Process.Capabilities.Bounding, spec.Process.Capabilities.Effective, spec.Process.Capabilities.Permitted = caps, caps, caps
	if err := bundle.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	drivertest.Started(t, d, id, dir)
	rep, err := verify.Host{}.Replica(t.Context(), d, id)
	if err != nil {
		t.Fatal(err)
	}
	want := []verify.Property{verify.PropCapabilities, verify.PropNoNewPrivs, verify.PropSeccomp, verify.PropReadonlyRoot, verify.PropPids}
	if diff := cmp.Diff(want, failing(rep.Findings)); diff != "" {
		t.Errorf("failing properties (-want +got):\n%s", diff)
	}
	r := rep.Processes[0].Report
	if r.Caps.Effective != 1<<13 || r.NoNewPrivs != 0 || r.Seccomp != 0 || r.Root.ReadOnly || r.Resources.PidsLimit != verify.Unlimited {
		t.Errorf("live values: CapEff %s NoNewPrivs %d Seccomp %d root ro %v pids %d; want CAP_NET_RAW, 0, 0, false, unlimited",
			r.Caps.Effective, r.NoNewPrivs, r.Seccomp, r.Root.ReadOnly, r.Resources.PidsLimit)
	}
	if rep.Holds() {
		t.Error("weakened replica holds")
	}
}

// TestLiveRunsc inspects a gVisor sandbox from its host processes.
func TestLiveRunsc(t *testing.T) {
	t.Parallel()
	const id = "verify-live-runsc"
	tenant := drivertest.Range(t, 43)
	_, rep := holding(t, "runsc", id, 43, bundle.WithResources(250, 128<<20, 96))
	if rep.Tier != verify.TierSandbox || len(rep.Inside) == 0 || len(rep.HostSide) == 0 {
		t.Errorf("tier %s, inside %q, host side %q: want sandbox with both stated", rep.Tier, rep.Inside, rep.HostSide)
	}
	// The sentry runs as the tenant's nobody, not the host's (issue 19):
	// reported, and no weakness.
	nobodyUID := tenant.HostUID + verify.Nobody
	if len(rep.Weaknesses) != 0 || rep.SentryUID == nil || *rep.SentryUID != nobodyUID {
		t.Errorf("weaknesses %q, sentry uid %v: want none and %d", rep.Weaknesses, rep.SentryUID, nobodyUID)
	}
	roles := map[string]int{}
	for _, p := range rep.Processes {
		roles[p.Role]++
		r := p.Report
		if slices.Contains([]uint32{r.UID.Real, r.UID.Effective, r.UID.Saved, r.UID.FS, r.GID.Effective}, 0) {
			t.Errorf("%s pid %d runs as host root: %+v", p.Role, r.Pid, r.UID)
		}
		if r.NoNewPrivs != 1 || r.Seccomp != 2 {
			t.Errorf("%s pid %d: NoNewPrivs %d Seccomp %d", p.Role, r.Pid, r.NoNewPrivs, r.Seccomp)
		}
		if u := nsOf(r, "user"); !u.Private {
			t.Errorf("%s pid %d in the host user namespace", p.Role, r.Pid)
		}
		if !r.Root.ReadOnly || len(r.HostMounts) != 0 {
			t.Errorf("%s pid %d: root %+v host mounts %+v", p.Role, r.Pid, r.Root, r.HostMounts)
		}
		if r.Resources.MemoryLimit != 128<<20 || r.Resources.MemorySwapLimit != 128<<20 || r.Resources.PidsLimit != 96 ||
			r.Resources.CPUQuota != 25000 || r.Resources.CPUPeriod != 100000 {
			t.Errorf("%s pid %d limits %+v, want 128Mi, no swap, 96 pids, 25000/100000", p.Role, r.Pid, r.Resources)
		}
		switch p.Role {
		case verify.RoleSandbox, verify.RoleStub:
			nobody := verify.IDs{Real: nobodyUID, Effective: nobodyUID, Saved: nobodyUID, FS: nobodyUID}
			onlyNobody := []verify.IDMap{{ContainerID: verify.Nobody, HostID: nobodyUID, Size: 1}}
			onlyNobodyG := []verify.IDMap{{ContainerID: verify.Nobody, HostID: tenant.HostGID + verify.Nobody, Size: 1}}
			if r.UID != nobody || !slices.Equal(r.UIDMap, onlyNobody) || !slices.Equal(r.GIDMap, onlyNobodyG) {
				t.Errorf("%s pid %d: uid %+v uid_map %v gid_map %v, want the tenant's nobody mapping only nobody", p.Role, r.Pid, r.UID, r.UIDMap, r.GIDMap)
			}
			if held := r.Caps.Effective | r.Caps.Permitted; held&^0x240000 != 0 {
				t.Errorf("%s pid %d holds %v, want at most CAP_SYS_ADMIN, CAP_SYS_CHROOT (in its own user namespace)", p.Role, r.Pid, held.Names())
			}
			// Debian 12's runsc (ptrace) keeps the sentry in the host PID
			// namespace; a current one gives it its own (stronger): either.
			if pid := nsOf(r, "pid"); pid.Private {
				t.Logf("%s pid %d has its own PID namespace (a current runsc)", p.Role, r.Pid)
			}
		case verify.RoleGofer:
			wantMap := []verify.IDMap{{ContainerID: 0, HostID: tenant.HostUID, Size: tenant.Size}}
			if r.UID.Effective != tenant.HostUID || !slices.Equal(r.UIDMap, wantMap) {
				t.Errorf("gofer uid %+v uid_map %v, want the tenant's range %v", r.UID, r.UIDMap, wantMap)
			}
			if r.Caps.Bounding != 0x4001f || r.Caps.Effective&^0x4001f != 0 {
				t.Errorf("gofer CapEff %s CapBnd %s, want within 000000000004001f", r.Caps.Effective, r.Caps.Bounding)
			}
			if !nsOf(r, "pid").Private {
				t.Error("gofer in the host PID namespace")
			}
		}
	}
	if roles[verify.RoleSandbox] != 1 || roles[verify.RoleGofer] != 1 || roles[verify.RoleStub] < 1 {
		t.Errorf("processes by role %v, want 1 sandbox, 1 gofer, ≥1 stub", roles)
	}
	if p, _ := rep.Primary(); p.Report.Command != "runsc-sandbox" || p.Report.Pid != rep.Pid {
		t.Errorf("primary %s pid %d, want runsc-sandbox pid %d", p.Report.Command, p.Report.Pid, rep.Pid)
	}
}

// TestLiveList lists a driver's replicas with the runtime's own list.
func TestLiveList(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"runc", "runsc"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			id := "verify-list-" + kind
			ddir := filepath.Join(drivertest.SearchableTempDir(t), kind)
			d := newDriverIn(t, kind, ddir)
			dir := drivertest.BusyboxBundle(t, drivertest.Range(t, 44), drivertest.Shell("sleep 300"), drivertest.Cgroups(id),
				bundle.WithResources(250, 128<<20, 96))
			drivertest.Started(t, d, id, dir)
			st, err := d.State(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			got, err := verify.List(t.Context(), kind, filepath.Join(ddir, "state"))
			if err != nil {
				t.Fatal(err)
			}
			want := []verify.Listed{{ID: id, Status: runtime.Running, Pid: st.Pid, Bundle: st.Bundle}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
			empty, err := verify.List(t.Context(), kind, filepath.Join(t.TempDir(), "none"))
			if err != nil || len(empty) != 0 {
				t.Errorf("List of a missing state dir = %v, %v; want nothing", empty, err)
			}
		})
	}
}

func cgroupOf(r verify.Report, ctrl string) verify.Cgroup {
	for _, c := range r.Cgroups {
		if slices.Contains(strings.Split(c.Controllers, ","), ctrl) {
			return c
		}
	}
	return verify.Cgroup{}
}

func failing(fs []verify.Finding) []verify.Property {
	var out []verify.Property
	for _, f := range fs {
		if !f.Holds {
			out = append(out, f.Property)
		}
	}
	return out
}

// TestLiveRunscWithoutOCISeccomp: a sandbox whose sentry does not apply the
// spec's filter to the workload fails workload-seccomp, and only that.
func TestLiveRunscWithoutOCISeccomp(t *testing.T) {
	t.Parallel()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runsc")
	const id = "verify-live-nooci"
	d, err := runtime.NewRunsc(runtime.Config{Dir: filepath.Join(drivertest.SearchableTempDir(t), "runsc"), NoOCISeccomp: true})
	if err != nil {
		t.Fatal(err)
	}
	drivertest.Started(t, d, id, drivertest.BusyboxBundle(t, drivertest.Range(t, 45), drivertest.Shell("sleep 300"),
		drivertest.Cgroups(id), bundle.WithResources(250, 128<<20, 96)))
	rep, err := verify.Host{}.Replica(t.Context(), d, id)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]verify.Property{verify.PropWorkloadSeccomp}, failing(rep.Findings)); diff != "" {
		t.Errorf("failing properties (-want +got):\n%s", diff)
	}
}

// TestLiveSentryUIDs: rung verify reports each sandbox's sentry host uid,
// and says "ok" only when tenants' sentries have uids of their own. Two
// tenants' sandboxes run by the driver (runsc in each tenant's user
// namespace) get their tenants' nobody and no weakness; two tenants'
// sandboxes started the old way (runsc as host root, as an older rung
// did) share host nobody and are both WEAK, for the shared uid and for
// sharing it with another tenant.
func TestLiveSentryUIDs(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(drivertest.SearchableTempDir(t), "runsc")
	d := newDriverIn(t, "runsc", dir)
	bin := drivertest.RequireBinary(t, "runsc")
	var reps []verify.Replica
	want := map[string]uint32{}
	for i, tenant := range []int{45, 46} {
		id := fmt.Sprintf("verify-uid-%d", i)
		r := drivertest.Range(t, tenant)
		drivertest.Started(t, d, id, drivertest.BusyboxBundle(t, r, drivertest.Shell("sleep 300"), drivertest.Cgroups(id)))
		want[id] = r.HostUID + verify.Nobody
	}
	state := filepath.Join(dir, "state")
	for i, tenant := range []int{47, 48} {
		id := fmt.Sprintf("verify-uid-legacy-%d", i)
		b := drivertest.BusyboxBundle(t, drivertest.Range(t, tenant), drivertest.Shell("sleep 300"), drivertest.Cgroups(id))
		for _, args := range [][]string{{"create", "--bundle", b, id}, {"start", id}} {
			// Output to a file: the sandbox keeps what it inherits open.
			out, err := os.CreateTemp(t.TempDir(), "out")
			if err != nil {
				t.Fatal(err)
			}
			// With the flags this runsc needs to keep its sentry unprivileged.
			hf, err := runtime.RunscHardeningFlags(t.Context(), bin)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, append(append([]string{"--root", state, "--platform=ptrace", "--network=none", "--oci-seccomp"}, hf...), args...)...)
			cmd.Stdout, cmd.Stderr = out, out
			err = cmd.Run()
			out.Close()
			if err != nil {
				b, _ := os.ReadFile(out.Name())
				t.Fatalf("runsc %v: %v\n%s", args, err, b)
			}
		}
		t.Cleanup(func() { stopLegacy(t, d, id) })
		want[id] = verify.Nobody
	}
	for _, id := range []string{"verify-uid-0", "verify-uid-1", "verify-uid-legacy-0", "verify-uid-legacy-1"} {
		rep, err := verify.Host{}.Replica(t.Context(), d, id)
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
	}
	verify.SeparateSentries(reps)
	for _, rep := range reps {
		requireHolds(t, rep)
		if rep.SentryUID == nil || *rep.SentryUID != want[rep.ID] {
			t.Errorf("%s: sentry uid %v, want %d", rep.ID, rep.SentryUID, want[rep.ID])
		}
		legacy := strings.Contains(rep.ID, "legacy")
		switch {
		case !legacy && len(rep.Weaknesses) != 0:
			t.Errorf("%s: weaknesses %q, want none (its sentry has its tenant's uid)", rep.ID, rep.Weaknesses)
		case legacy && (len(rep.Weaknesses) != 2 || rep.Weaknesses[0] != verify.SharedSentryUID ||
			!strings.HasPrefix(rep.Weaknesses[1], verify.SentryUIDShared)):
			t.Errorf("%s: weaknesses %q, want the shared host nobody and the uid shared with the other tenant", rep.ID, rep.Weaknesses)
		}
	}
}

// stopLegacy stops and deletes a sandbox started by runsc as host root.
// Its processes were orphaned onto this test process (the driver made it
// a subreaper), as an old agent's are onto init: they are killed and
// reaped here, so that runsc sees them gone.
func stopLegacy(t *testing.T, d *runtime.OCI, id string) {
	ctx := context.WithoutCancel(t.Context())
	procs, _ := d.HostProcesses(ctx, id)
	_ = d.Kill(ctx, id, syscall.SIGKILL)
	for _, p := range procs {
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		for range 200 {
			if wpid, _ := syscall.Wait4(p.Pid, nil, syscall.WNOHANG, nil); wpid == p.Pid || syscall.Kill(p.Pid, 0) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := d.Delete(ctx, id); err != nil {
		t.Errorf("delete %s: %v", id, err)
	}
}
