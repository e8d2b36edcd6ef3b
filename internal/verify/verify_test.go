package verify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/golden"
	"rung.dev/rung/internal/uidrange"
)

// fixture is a Host reading the /proc and cgroup tree testdata/name: the
// fakes at the I/O edge. The trees copy what runc 1.1.5 and runsc 2022-12
// show on a cgroup v1 hybrid host (runc, runsc), a cgroup v2 host (v2), a
// privileged Docker container (privileged), and malformed files (broken).
func fixture(name string) Host {
	return Host{FS: os.DirFS(filepath.Join("testdata", name))}
}

// Host namespace inodes of the fixtures' PID 1 (or self, in v2).
const (
	hostCgroupNS = "cgroup:[4026531835]"
	hostTimeNS   = "time:[4026531834]"
	hostPidNS    = "pid:[4026531836]"
)

// containerNS are the namespaces of the fixture containers (runc and v2).
func containerNS() []Namespace {
	return []Namespace{
		{"cgroup", "cgroup:[4026532251]", true},
		{"ipc", "ipc:[4026532180]", true},
		{"mnt", "mnt:[4026532178]", true},
		{"net", "net:[4026532182]", true},
		{"pid", "pid:[4026532181]", true},
		{"time", hostTimeNS, false},
		{"user", "user:[4026532177]", true},
		{"uts", "uts:[4026532179]", true},
	}
}

func v1Cgroups(path string) []Cgroup {
	var out []Cgroup
	for _, c := range []struct{ ctrl, dir string }{
		{"name=systemd", "systemd"}, {"pids", "pids"}, {"devices", "devices"}, {"memory", "memory"},
		{"cpuset", "cpuset"}, {"cpuacct", "cpuacct"}, {"cpu", "cpu"},
	} {
		out = append(out, Cgroup{Controllers: c.ctrl, Path: path, Dir: "/sys/fs/cgroup/" + c.dir + path})
	}
	return out
}

// sandboxReport is what the runsc fixture's sentry (5100) and stub (5101)
// show: nobody in a user namespace mapping only nobody, CAP_SYS_ADMIN and
// CAP_SYS_CHROOT there, the host PID namespace, an empty read-only root.
func sandboxReport(pid int, command string, args ...string) Report {
	nobody := IDs{65534, 65534, 65534, 65534}
	if len(args) > 0 {
		args = append([]string{command}, args...)
	}
	return Report{
		Pid: pid, Command: command, Args: args, UID: nobody, GID: nobody,
		Caps:       Caps{Inheritable: 0x240000, Permitted: 0x240000, Effective: 0x240000, Bounding: 0x1ffffffffff, Ambient: 0x240000},
		NoNewPrivs: 1, Seccomp: 2, SeccompFilters: 1,
		UIDMap: []IDMap{{65534, 65534, 1}},
		GIDMap: []IDMap{{65534, 65534, 1}},
		Namespaces: []Namespace{
			{"cgroup", hostCgroupNS, false}, {"ipc", "ipc:[4026532329]", true}, {"mnt", "mnt:[4026532327]", true},
			{"net", "net:[4026532330]", true}, {"pid", hostPidNS, false}, {"time", hostTimeNS, false},
			{"user", "user:[4026532326]", true}, {"uts", "uts:[4026532328]", true},
		},
		NamespaceReference: "/proc/1/ns",
		Cgroups:            append(v1Cgroups("/rung/bank/db-0"), Cgroup{Path: "/", Dir: "/sys/fs/cgroup/unified"}),
		Resources: Resources{
			Version: 1, MemoryLimit: 128 << 20, MemorySwapLimit: 128 << 20, PidsLimit: 64, CPUQuota: 25000, CPUPeriod: 100000,
			MemoryUsage: 30 << 20, PidsCurrent: 27,
		},
		Root: Mount{Point: "/", FSType: "tmpfs", Source: "runsc-root", Root: "/", ReadOnly: true},
	}
}

func TestInspect(t *testing.T) {
	for _, c := range []struct {
		name    string
		fixture string
		pid     int
		want    Report
	}{
		{
			name: "runc init", fixture: "runc", pid: 4242,
			want: Report{
				Pid: 4242, Command: "sleep", Args: []string{"sleep", "60"},
				UID:        IDs{1245184, 1245184, 1245184, 1245184},
				GID:        IDs{1245184, 1245184, 1245184, 1245184},
				NoNewPrivs: 1, Seccomp: 2, SeccompFilters: 1,
				UIDMap:             []IDMap{{0, 1245184, 65536}},
				GIDMap:             []IDMap{{0, 1245184, 65536}},
				Namespaces:         containerNS(),
				NamespaceReference: "/proc/1/ns",
				Cgroups:            append(v1Cgroups("/rung/acme/web-0"), Cgroup{Path: "/rung/acme/web-0", Dir: "/sys/fs/cgroup/unified/rung/acme/web-0"}),
				Resources: Resources{
					Version: 1, MemoryLimit: 64 << 20, MemorySwapLimit: 64 << 20, PidsLimit: 32, CPUQuota: 50000, CPUPeriod: 100000,
					MemoryUsage: 1867776, PidsCurrent: 2, MemoryFailcnt: 12, OOMKills: 1, PidsRefused: 3,
				},
				Root: Mount{Point: "/", FSType: "ext4", Source: "/dev/vda", Root: "/var/lib/rung/bundles/web-0/rootfs", ReadOnly: true},
			},
		},
		{name: "runsc sentry", fixture: "runsc", pid: 5100, want: sandboxReport(5100, "runsc-sandbox",
			"--root=/var/lib/rung/runsc/state", "--network=none", "--oci-seccomp=true", "boot", "db-0")},
		{name: "runsc stub has no command line", fixture: "runsc", pid: 5101, want: sandboxReport(5101, "exe")},
		{
			name: "privileged docker container", fixture: "privileged", pid: 777,
			want: Report{
				Pid: 777, Command: "bash", Args: []string{"bash"},
				Caps:       Caps{Permitted: 0x1ffffffffff, Effective: 0x1ffffffffff, Bounding: 0x1ffffffffff},
				NoNewPrivs: 0, Seccomp: 0,
				UIDMap: []IDMap{{0, 0, 4294967295}},
				GIDMap: []IDMap{{0, 0, 4294967295}},
				Namespaces: []Namespace{
					{"cgroup", hostCgroupNS, false}, {"ipc", "ipc:[4026532402]", true}, {"mnt", "mnt:[4026532400]", true},
					{"net", "net:[4026531833]", false}, {"pid", hostPidNS, false}, {"time", hostTimeNS, false},
					{"user", "user:[4026531837]", false}, {"uts", "uts:[4026532401]", true},
				},
				NamespaceReference: "/proc/1/ns",
				Cgroups:            append(v1Cgroups("/docker/abc"), Cgroup{Path: "/docker/abc", Dir: "/sys/fs/cgroup/unified/docker/abc"}),
				Resources: Resources{
					Version: 1, MemoryLimit: Unlimited, MemorySwapLimit: Unlimited, PidsLimit: Unlimited, CPUQuota: Unlimited, CPUPeriod: 100000,
					MemoryUsage: 1867776, PidsCurrent: 1,
				},
				Root: Mount{Point: "/", FSType: "overlay", Source: "overlay", Root: "/"},
				HostMounts: []Mount{
					{Point: "/dev", FSType: "devtmpfs", Source: "devtmpfs", Root: "/"},
					{Point: "/var/run/docker.sock", FSType: "ext4", Source: "/dev/vda", Root: "/var/run/docker.sock"},
					{Point: "/etc/hosts", FSType: "ext4", Source: "/dev/vda", Root: "/var/lib/docker/containers/abc/hosts"},
					{Point: "/data dir", FSType: "ext4", Source: "/dev/vda", Root: "/home/alice"},
				},
			},
		},
		{
			name: "cgroup v2 and hidden PID 1", fixture: "v2", pid: 900,
			want: Report{
				Pid: 900, Command: "/app", Args: []string{"/app", "--serve"},
				UID:        IDs{1114112, 1114112, 1114112, 1114112},
				GID:        IDs{1114112, 1114112, 1114112, 1114112},
				Caps:       Caps{Effective: 0x400, Bounding: 0x400, Ambient: 0x400},
				NoNewPrivs: 1, Seccomp: 2, SeccompFilters: 1,
				UIDMap:             []IDMap{{0, 1114112, 65536}},
				GIDMap:             []IDMap{{0, 1114112, 65536}},
				Namespaces:         containerNS(),
				NamespaceReference: "/proc/self/ns",
				Cgroups:            []Cgroup{{Path: "/rung/geo/rocks-1", Dir: "/sys/fs/cgroup/rung/geo/rocks-1"}},
				Resources: Resources{
					Version: 2, MemoryLimit: 256 << 20, MemorySwapLimit: 256 << 20, PidsLimit: 128, CPUQuota: 50000, CPUPeriod: 100000,
					MemoryUsage: 50 << 20, PidsCurrent: 5, MemoryFailcnt: 40, OOMKills: 2,
				},
				Root: Mount{Point: "/", FSType: "ext4", Source: "/dev/vda", Root: "/var/lib/rung/bundles/web-0/rootfs", ReadOnly: true},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := fixture(c.fixture).Inspect(t.Context(), c.pid)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Inspect (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInspectErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		fixture string
		pid     int
		want    error
	}{
		{"gone", "runc", 99999, ErrNoProcess},
		{"short Uid line", "broken", 10, ErrMalformed},
		{"uid_map of two columns", "broken", 11, ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := fixture(c.fixture).Inspect(t.Context(), c.pid)
			if !errors.Is(err, c.want) {
				t.Errorf("Inspect = %v, want %v", err, c.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := fixture("runc").Inspect(ctx, 4242); !errors.Is(err, context.Canceled) {
		t.Errorf("Inspect with cancelled ctx = %v", err)
	}
}

// TestCheck decides every property of the fixture processes; the table
// lists the properties that must fail (all others must hold) and the
// golden file holds every finding as `rung verify` would explain it.
func TestCheck(t *testing.T) {
	tenant := func(i int) uidrange.Range {
		r, err := uidrange.ForTenant(i)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	container := Expectation{Tier: TierContainer, Role: RoleInit, Range: tenant(3), NoSwap: true,
		Namespaces:  []string{"cgroup"},
		MemoryLimit: 64 << 20, PidsLimit: 32, CPUQuota: 50000, CPUPeriod: 100000}
	sandbox := func(role string) Expectation {
		return Expectation{Tier: TierSandbox, Role: role, Range: tenant(4), NoSwap: true,
			MemoryLimit: 128 << 20, PidsLimit: 64, CPUQuota: 25000, CPUPeriod: 100000}
	}
	with := func(e Expectation, f func(*Expectation)) Expectation { f(&e); return e }
	for _, c := range []struct {
		name    string
		fixture string
		pid     int
		expect  Expectation
		fails   []Property
	}{
		{"runc hardened", "runc", 4242, container, nil},
		{"runc: another tenant's range", "runc", 4242, with(container, func(e *Expectation) { e.Range = tenant(5) }), []Property{PropUIDMap}},
		{"runc: spec asked other limits", "runc", 4242, with(container, func(e *Expectation) {
			e.MemoryLimit, e.PidsLimit, e.CPUQuota = 128<<20, 64, 100000
		}), []Property{PropMemory, PropPids, PropCPU}},
		{"runc: any range, any limits", "runc", 4242, Expectation{Tier: TierContainer, Role: RoleInit, NoSwap: true}, nil},
		{"runc: but the tier asked is sandbox", "runc", 4242, with(container, func(e *Expectation) { e.Tier = TierSandbox }), []Property{PropTier}},
		{"runsc sentry", "runsc", 5100, sandbox(RoleSandbox), nil},
		{"runsc stub", "runsc", 5101, sandbox(RoleStub), nil},
		{"runsc gofer", "runsc", 5102, sandbox(RoleGofer), nil},
		{"runsc gofer: wrong tenant", "runsc", 5102, with(sandbox(RoleGofer), func(e *Expectation) { e.Range = tenant(3) }), []Property{PropUIDMap}},
		{"runsc sentry: caps as if a container", "runsc", 5100, with(sandbox(RoleInit), func(e *Expectation) { e.Tier = TierSandbox }),
			[]Property{PropUIDMap, PropNamespaces, PropCapabilities}},
		{"runsc gofer: as a container init", "runsc", 5102, with(sandbox(RoleInit), func(e *Expectation) { e.Tier = TierContainer }),
			[]Property{PropTier, PropCapabilities}},
		{"privileged", "privileged", 777, container, []Property{
			PropTier, PropNotHostRoot, PropUIDMap, PropNamespaces, PropCapabilities, PropNoNewPrivs, PropSeccomp,
			PropReadonlyRoot, PropNoHostMounts, PropMemory, PropNoSwap, PropPids, PropCPU,
		}},
		{"v2 with an allow-listed capability", "v2", 900, Expectation{Tier: TierContainer, Role: RoleInit, Range: tenant(1),
			Capabilities: []string{"CAP_NET_BIND_SERVICE"}, NoSwap: true, MemoryLimit: 256 << 20, PidsLimit: 128, CPUQuota: 50000, CPUPeriod: 100000}, nil},
		{"v2 capability not granted", "v2", 900, Expectation{Tier: TierContainer, Role: RoleInit, Range: tenant(1), NoSwap: true},
			[]Property{PropCapabilities}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := fixture(c.fixture).Inspect(t.Context(), c.pid)
			if err != nil {
				t.Fatal(err)
			}
			findings := Check(r, c.expect)
			var fails []Property
			for _, f := range findings {
				if !f.Holds {
					fails = append(fails, f.Property)
				}
			}
			if diff := cmp.Diff(c.fails, fails); diff != "" {
				t.Errorf("failing properties (-want +got):\n%s\nfindings:\n%s", diff, render(findings))
			}
			golden.Check(t, filepath.Join("testdata", "check", goldenName(c.name)), []byte(render(findings)))
		})
	}
}

// TestCheckWorkloadSeccomp: a sentry started without --oci-seccomp does not
// filter the workload's system calls, and Check says so.
func TestCheckWorkloadSeccomp(t *testing.T) {
	r, err := fixture("runsc").Inspect(t.Context(), 5100)
	if err != nil {
		t.Fatal(err)
	}
	r.Args = slices.DeleteFunc(r.Args, func(a string) bool { return strings.HasPrefix(a, "--oci-seccomp") })
	var fails []Property
	for _, f := range Check(r, Expectation{Tier: TierSandbox, Role: RoleSandbox, NoSwap: true}) {
		if !f.Holds {
			fails = append(fails, f.Property)
		}
	}
	if diff := cmp.Diff([]Property{PropWorkloadSeccomp}, fails); diff != "" {
		t.Errorf("failing properties (-want +got):\n%s", diff)
	}
}

// goldenName makes a file name of a test case name.
func goldenName(name string) string {
	return strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(name), "-"), "-") + ".golden"
}

func render(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func TestCgroupResources(t *testing.T) {
	got, err := fixture("runc").CgroupResources(t.Context(), "/rung/acme/web-0")
	if err != nil {
		t.Fatal(err)
	}
	want := Resources{Version: 1, MemoryLimit: 64 << 20, MemorySwapLimit: 64 << 20, PidsLimit: 32, CPUQuota: 50000, CPUPeriod: 100000,
		MemoryUsage: 1867776, PidsCurrent: 2, MemoryFailcnt: 12, OOMKills: 1, PidsRefused: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CgroupResources (-want +got):\n%s", diff)
	}
	if _, err := fixture("runc").CgroupResources(t.Context(), "/rung/nobody/here"); !errors.Is(err, ErrNoCgroup) {
		t.Errorf("CgroupResources of a missing cgroup = %v, want ErrNoCgroup", err)
	}
}

func TestCapSet(t *testing.T) {
	s, err := CapSetOf("sys_admin", "CAP_SYS_CHROOT")
	if err != nil {
		t.Fatal(err)
	}
	if s != 0x240000 || s.String() != "0000000000240000" {
		t.Errorf("CapSetOf = %s", s)
	}
	if diff := cmp.Diff([]string{"CAP_SYS_CHROOT", "CAP_SYS_ADMIN", "CAP_63"}, (s | 1<<63).Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if _, err := CapSetOf("CAP_FLY"); err == nil {
		t.Error("CapSetOf(CAP_FLY) succeeded")
	}
}

// TestSeparateSentries: sandboxes of different tenants whose sentries
// share a host uid are weak; the same tenant's, or different uids, are not.
func TestSeparateSentries(t *testing.T) {
	uid := func(u uint32) *uint32 { return &u }
	for _, c := range []struct {
		name string
		reps []Replica
		want [][]string
	}{
		{"different tenants, different uids", []Replica{
			{ID: "a", Tenant: "t1", SentryUID: uid(1179646)},
			{ID: "b", Tenant: "t2", SentryUID: uid(1245182)},
		}, [][]string{nil, nil}},
		{"different tenants, one uid", []Replica{
			{ID: "a", Tenant: "t1", SentryUID: uid(65534)},
			{ID: "b", Tenant: "t2", SentryUID: uid(65534)},
			{ID: "c", Tenant: "t3"}, // a container: no sentry
		}, [][]string{
			{SentryUIDShared + " (65534, also replica b's)"},
			{SentryUIDShared + " (65534, also replica a's)"},
			nil,
		}},
		{"one tenant, one uid", []Replica{
			{ID: "a", Tenant: "t1", SentryUID: uid(1179646)},
			{ID: "b", Tenant: "t1", SentryUID: uid(1179646)},
		}, [][]string{nil, nil}},
	} {
		t.Run(c.name, func(t *testing.T) {
			SeparateSentries(c.reps)
			var got [][]string
			for _, r := range c.reps {
				got = append(got, r.Weaknesses)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("weaknesses (-want +got):\n%s", diff)
			}
		})
	}
}
