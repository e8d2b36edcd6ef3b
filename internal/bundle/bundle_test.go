package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/golden"
	"rung.dev/rung/internal/uidrange"
)

func tenant(t *testing.T, i int) uidrange.Range {
	t.Helper()
	r, err := uidrange.ForTenant(i)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// base are the options every replica needs: a tenant range and a command.
func base(t *testing.T) []Opt {
	return []Opt{WithUserNamespace(tenant(t, 3)), WithProcess([]string{"/bin/app", "--serve"}, []string{"MODE=prod"}, "/srv")}
}

func mustNew(t *testing.T, opts ...Opt) *specs.Spec {
	t.Helper()
	s, err := New(append(base(t), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGolden pins the whole hardened config.json of a typical replica.
// Regenerate with: go test ./internal/bundle -run TestGolden -update
func TestGolden(t *testing.T) {
	if goruntime.GOARCH != "amd64" {
		t.Skip("golden seccomp filter is for amd64; the profile's syscall list depends on the architecture")
	}
	s := mustNew(t,
		WithHostname("web-0"),
		WithCgroupsPath("/rung/biology/web-0"),
		WithResources(500, 128<<20, 64),
		WithCapabilities("net_bind_service"),
	)
	dir := t.TempDir()
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "config.golden.json"), got)
}

func TestWriteRead(t *testing.T) {
	s := mustNew(t)
	dir := t.TempDir()
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode = %v, want 0600", fi.Mode().Perm())
	}
	back, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Empty capability sets are omitted in JSON: "capabilities": {} (none).
	if diff := cmp.Diff(s, back, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip (-wrote +read):\n%s", diff)
	}
	if err := Validate(back); err != nil {
		t.Errorf("read spec not valid: %v", err)
	}
}

// TestDefaults checks the always-on parts of a spec built with only the
// required options.
func TestDefaults(t *testing.T) {
	s := mustNew(t)
	r := tenant(t, 3)
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"no_new_privs", s.Process.NoNewPrivileges, true},
		{"readonly root", s.Root, &specs.Root{Path: "rootfs", Readonly: true}},
		{"capabilities", s.Process.Capabilities, &specs.LinuxCapabilities{
			Bounding: []string{}, Effective: []string{}, Inheritable: []string{}, Permitted: []string{}, Ambient: []string{},
		}},
		{"uid map", s.Linux.UIDMappings, []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.HostUID, Size: 65536}}},
		{"gid map", s.Linux.GIDMappings, []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.HostGID, Size: 65536}}},
		{"namespaces", s.Linux.Namespaces, []specs.LinuxNamespace{
			{Type: "pid"}, {Type: "network"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "cgroup"}, {Type: "user"},
		}},
		{"mount types", mountSummary(s.Mounts), []string{
			"/proc proc", "/dev tmpfs", "/dev/pts devpts", "/dev/shm tmpfs", "/dev/mqueue mqueue", "/sys sysfs ro", "/tmp tmpfs",
		}},
		{"cpu", s.Linux.Resources.CPU, &specs.LinuxCPU{Quota: ptr(int64(100000)), Period: ptr(uint64(100000))}},
		{"memory", s.Linux.Resources.Memory, &specs.LinuxMemory{Limit: ptr(int64(256 << 20)), Swap: ptr(int64(256 << 20))}},
		{"pids", s.Linux.Resources.Pids, &specs.LinuxPids{Limit: ptr(int64(256))}},
		{"rlimits", s.Process.Rlimits, []specs.POSIXRlimit{{Type: "RLIMIT_CORE"}, {Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 1024}}},
		{"env", s.Process.Env, []string{defaultPath, "MODE=prod"}},
		{"cwd", s.Process.Cwd, "/srv"},
		{"hooks", s.Hooks, (*specs.Hooks)(nil)},
		{"devices", s.Linux.Devices, []specs.LinuxDevice(nil)},
		{"masked /proc/kcore", slices.Contains(s.Linux.MaskedPaths, "/proc/kcore"), true},
		{"readonly /proc/sys", slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys"), true},
		{"seccomp default", s.Linux.Seccomp.DefaultAction, specs.ActErrno},
	} {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, c.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func mountSummary(ms []specs.Mount) []string {
	var out []string
	for _, m := range ms {
		s := m.Destination + " " + m.Type
		if slices.Contains(m.Options, "ro") {
			s += " ro"
		}
		out = append(out, s)
	}
	return out
}

// TestOptions checks each option's effect on the part of the spec it owns.
func TestOptions(t *testing.T) {
	nbs := []string{"CAP_NET_BIND_SERVICE"}
	for _, c := range []struct {
		name string
		opt  Opt
		part func(*specs.Spec) any
		want any
	}{
		{"hostname", WithHostname("api-2"), func(s *specs.Spec) any { return s.Hostname }, "api-2"},
		{"user", WithUser(1000, 1000, 10), func(s *specs.Spec) any { return s.Process.User },
			specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}}},
		{"capability", WithCapabilities("NET_BIND_SERVICE"), func(s *specs.Spec) any { return s.Process.Capabilities },
			&specs.LinuxCapabilities{Bounding: nbs, Effective: nbs, Inheritable: nbs, Permitted: nbs, Ambient: nbs}},
		{"capability dedup", WithCapabilities("cap_net_bind_service", "NET_BIND_SERVICE"),
			func(s *specs.Spec) any { return s.Process.Capabilities.Bounding }, nbs},
		{"no capabilities after grant", func(s *specs.Spec) error {
			if err := WithCapabilities("NET_BIND_SERVICE")(s); err != nil {
				return err
			}
			return WithNoCapabilities()(s)
		}, func(s *specs.Spec) any { return s.Process.Capabilities.Effective }, []string{}},
		{"resources", WithResources(2500, 1<<30, 1000), func(s *specs.Spec) any {
			r := s.Linux.Resources
			return []int64{*r.CPU.Quota, int64(*r.CPU.Period), *r.Memory.Limit, *r.Memory.Swap, *r.Pids.Limit}
		}, []int64{250000, 100000, 1 << 30, 1 << 30, 1000}},
		{"burst", func(s *specs.Spec) error {
			if err := WithResources(500, 64<<20, 32)(s); err != nil {
				return err
			}
			return WithBurst(500, 2000, 64<<20, 256<<20)(s)
		}, func(s *specs.Spec) any {
			r := s.Linux.Resources
			return []int64{*r.CPU.Quota, int64(*r.CPU.Shares), *r.Memory.Limit, *r.Memory.Swap, *r.Memory.Reservation, *r.Pids.Limit}
		}, []int64{200000, 512, 256 << 20, 256 << 20, 64 << 20, 32}},
		{"rlimits replace", WithRlimits(specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128}, specs.POSIXRlimit{Type: "RLIMIT_NPROC", Soft: 10, Hard: 10}),
			func(s *specs.Spec) any { return s.Process.Rlimits }, []specs.POSIXRlimit{
				{Type: "RLIMIT_CORE"}, {Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128}, {Type: "RLIMIT_NPROC", Soft: 10, Hard: 10},
			}},
		{"tmpfs size", WithTmpfsTmp(1 << 20), func(s *specs.Spec) any { return s.Mounts[len(s.Mounts)-1] },
			specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=1048576"}}},
		{"masked extra", WithMaskedPaths("/proc/driver"), func(s *specs.Spec) any {
			return s.Linux.MaskedPaths[len(s.Linux.MaskedPaths)-1]
		}, "/proc/driver"},
		{"readonly extra", WithReadonlyPaths("/proc/tty"), func(s *specs.Spec) any {
			return s.Linux.ReadonlyPaths[len(s.Linux.ReadonlyPaths)-1]
		}, "/proc/tty"},
		{"cgroups path", WithCgroupsPath("/rung/a/b"), func(s *specs.Spec) any { return s.Linux.CgroupsPath }, "/rung/a/b"},
		{"rootfs", WithRootfs("/var/lib/rung/rootfs/x"), func(s *specs.Spec) any { return s.Root },
			&specs.Root{Path: "/var/lib/rung/rootfs/x", Readonly: true}},
		{"namespaces reset", func(s *specs.Spec) error {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "network", Path: "/proc/1/ns/net"}}
			return WithNamespaces()(s)
		}, func(s *specs.Spec) any { return len(s.Linux.Namespaces) }, 7},
		{"env override PATH", WithProcess([]string{"/a"}, []string{"PATH=/bin", "X=1"}, ""),
			func(s *specs.Spec) any { return []string{strings.Join(s.Process.Env, ";"), s.Process.Cwd} },
			[]string{"PATH=/bin;X=1", "/"}},
		{"annotations", WithAnnotations(map[string]string{"rung.dev/tenant": "biology"}),
			func(s *specs.Spec) any { return s.Annotations }, map[string]string{"rung.dev/tenant": "biology"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustNew(t, c.opt)
			if diff := cmp.Diff(c.want, c.part(s)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestOptionErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []Opt
		want error
	}{
		{"SYS_ADMIN", []Opt{WithCapabilities("SYS_ADMIN")}, ErrCapabilityNotAllowed},
		{"NET_RAW", []Opt{WithCapabilities("CAP_NET_RAW")}, ErrCapabilityNotAllowed},
		{"tiny cpu", []Opt{WithResources(1, 1<<30, 10)}, ErrInvalidOption},
		{"tiny memory", []Opt{WithResources(100, 1024, 10)}, ErrInvalidOption},
		{"no pids", []Opt{WithResources(100, 1<<30, 0)}, ErrInvalidOption},
		{"burst limit below request", []Opt{WithBurst(500, 400, 64<<20, 64<<20)}, ErrInvalidOption},
		{"burst memory below request", []Opt{WithBurst(500, 500, 64<<20, 32<<20)}, ErrInvalidOption},
		{"bad hostname", []Opt{WithHostname("Not_A_Label")}, ErrInvalidOption},
		{"bad rlimit", []Opt{WithRlimits(specs.POSIXRlimit{Type: "RLIMIT_BOGUS"})}, ErrInvalidOption},
		{"soft above hard", []Opt{WithRlimits(specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 5})}, ErrInvalidOption},
		{"relative cgroups", []Opt{WithCgroupsPath("rung/x")}, ErrInvalidOption},
		{"dotdot cgroups", []Opt{WithCgroupsPath("/rung/../x")}, ErrInvalidOption},
		{"empty command", []Opt{WithProcess(nil, nil, "/")}, ErrInvalidOption},
		{"relative cwd", []Opt{WithProcess([]string{"/a"}, nil, "srv")}, ErrInvalidOption},
		{"bad env", []Opt{WithProcess([]string{"/a"}, []string{"NOEQUALS"}, "/")}, ErrInvalidOption},
		{"zero tmpfs", []Opt{WithTmpfsTmp(0)}, ErrInvalidOption},
		{"host root range", []Opt{WithUserNamespace(uidrange.Range{HostUID: 0, HostGID: 0, Size: 65536})}, uidrange.ErrInvalid},
		{"user outside range", []Opt{WithUser(70000, 0)}, ErrNotHardened},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(append(base(t), c.opts...)...)
			if !errors.Is(err, c.want) {
				t.Errorf("New = %v, want %v", err, c.want)
			}
		})
	}
	t.Run("no user namespace", func(t *testing.T) {
		if _, err := New(WithProcess([]string{"/a"}, nil, "/")); !errors.Is(err, ErrNotHardened) {
			t.Errorf("New without a tenant range = %v, want ErrNotHardened", err)
		}
	})
	t.Run("no command", func(t *testing.T) {
		if _, err := New(WithUserNamespace(tenant(t, 0))); !errors.Is(err, ErrNotHardened) {
			t.Errorf("New without a command = %v, want ErrNotHardened", err)
		}
	})
}

// TestValidateRejects weakens a valid spec one way at a time, as a caller
// might by editing it after New, and expects Validate to name the problem.
func TestValidateRejects(t *testing.T) {
	for _, c := range []struct {
		name   string
		weaken func(*specs.Spec)
		msg    string
	}{
		{"writable root", func(s *specs.Spec) { s.Root.Readonly = false }, "root filesystem is writable"},
		{"new privs", func(s *specs.Spec) { s.Process.NoNewPrivileges = false }, "no_new_privs"},
		{"cap added", func(s *specs.Spec) {
			s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, "CAP_SYS_ADMIN")
		}, "effective capability CAP_SYS_ADMIN"},
		{"caps absent", func(s *specs.Spec) { s.Process.Capabilities = nil }, "capability sets absent"},
		{"bind mount", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/srv", Options: []string{"rbind"}})
		}, "bind mount on /data"},
		{"sysfs rw", func(s *specs.Spec) {
			for i := range s.Mounts {
				if s.Mounts[i].Type == "sysfs" {
					s.Mounts[i].Options = []string{"nosuid"}
				}
			}
		}, "sysfs mounted read-write"},
		{"no tmp", func(s *specs.Spec) {
			s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/tmp" })
		}, "no tmpfs on /tmp"},
		{"host netns", func(s *specs.Spec) {
			s.Linux.Namespaces[1].Path = "/proc/1/ns/net"
		}, "joins existing network namespace"},
		{"no pid ns", func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[1:] }, "no own pid namespace"},
		{"maps host root", func(s *specs.Spec) { s.Linux.UIDMappings[0].HostID = 0 }, "maps host root"},
		{"two maps", func(s *specs.Spec) {
			s.Linux.UIDMappings = append(s.Linux.UIDMappings, specs.LinuxIDMapping{ContainerID: 65536, HostID: 1, Size: 1})
		}, "exactly one"},
		{"no seccomp", func(s *specs.Spec) { s.Linux.Seccomp = nil }, "no seccomp filter"},
		{"seccomp allow default", func(s *specs.Spec) { s.Linux.Seccomp.DefaultAction = specs.ActAllow }, "seccomp default action"},
		{"seccomp allows ptrace", func(s *specs.Spec) {
			s.Linux.Seccomp.Syscalls = append(s.Linux.Seccomp.Syscalls, specs.LinuxSyscall{Names: []string{"ptrace"}, Action: specs.ActAllow})
		}, "seccomp allows ptrace"},
		{"hooks", func(s *specs.Spec) { s.Hooks = &specs.Hooks{} }, "hooks"},
		{"sysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel.shmmax": "1"} }, "sysctls"},
		{"device", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/sda", Type: "b"}} }, "device nodes"},
		{"device cgroup allow all", func(s *specs.Spec) {
			s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		}, "denying all devices"},
		{"no pids limit", func(s *specs.Spec) { s.Linux.Resources.Pids = nil }, "no pids limit"},
		{"swap", func(s *specs.Spec) { s.Linux.Resources.Memory.Swap = ptr(int64(-1)) }, "swap allowed"},
		{"no cpu limit", func(s *specs.Spec) { s.Linux.Resources.CPU = nil }, "no cpu limit"},
		{"unmasked kcore", func(s *specs.Spec) {
			s.Linux.MaskedPaths = slices.DeleteFunc(s.Linux.MaskedPaths, func(p string) bool { return p == "/proc/kcore" })
		}, "/proc/kcore not masked"},
		{"writable /proc/sys", func(s *specs.Spec) {
			s.Linux.ReadonlyPaths = slices.DeleteFunc(s.Linux.ReadonlyPaths, func(p string) bool { return p == "/proc/sys" })
		}, "/proc/sys not read-only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustNew(t)
			c.weaken(s)
			err := Validate(s)
			if !errors.Is(err, ErrNotHardened) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Validate = %v, want ErrNotHardened mentioning %q", err, c.msg)
			}
		})
	}
}

// TestSeccompProfile checks the filter's semantics: Docker's default
// profile (allow-list, ERRNO default) without the ptrace family.
func TestSeccompProfile(t *testing.T) {
	s := mustNew(t)
	f := s.Linux.Seccomp
	if f.DefaultAction != specs.ActErrno || f.DefaultErrnoRet == nil || *f.DefaultErrnoRet != 1 {
		t.Errorf("default action %s errno %v, want SCMP_ACT_ERRNO EPERM", f.DefaultAction, f.DefaultErrnoRet)
	}
	allowed := func(name string) (plain, filtered bool) {
		for _, sc := range f.Syscalls {
			if sc.Action == specs.ActAllow && slices.Contains(sc.Names, name) {
				if len(sc.Args) == 0 {
					plain = true
				} else {
					filtered = true
				}
			}
		}
		return
	}
	for _, name := range []string{"read", "write", "openat", "execve", "exit_group", "futex", "socket", "clock_gettime"} {
		if plain, filtered := allowed(name); !plain && !filtered {
			t.Errorf("%s not allowed", name)
		}
	}
	for _, name := range forbiddenSyscalls() {
		if plain, filtered := allowed(name); plain || filtered {
			t.Errorf("%s allowed (plain %v, with argument filter %v)", name, plain, filtered)
		}
	}
	// clone is allowed only with a filter that rejects namespace flags.
	if plain, filtered := allowed("clone"); plain || !filtered {
		t.Errorf("clone: plain %v filtered %v, want only with an argument filter", plain, filtered)
	}
	// The one grantable capability does not widen the filter.
	withCap := mustNew(t, WithCapabilities("NET_BIND_SERVICE")).Linux.Seccomp
	if diff := cmp.Diff(f, withCap); diff != "" {
		t.Errorf("CAP_NET_BIND_SERVICE changed the filter:\n%s", diff)
	}
}

// TestSeccompNeedsCapsForMoreSyscalls shows that the filter follows the
// capability set, as Docker's does: with CAP_SYS_ADMIN (never granted by
// New) the profile would allow mount and unshare.
func TestSeccompNeedsCapsForMoreSyscalls(t *testing.T) {
	s := mustNew(t)
	s.Process.Capabilities.Bounding = []string{"CAP_SYS_ADMIN"}
	f, err := defaultSeccomp(s)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(f)
	for _, name := range []string{`"mount"`, `"unshare"`, `"setns"`} {
		if !bytes.Contains(data, []byte(name)) {
			t.Errorf("profile for CAP_SYS_ADMIN lacks %s", name)
		}
	}
	if bytes.Contains(data, []byte(`"ptrace"`)) {
		t.Errorf("ptrace allowed even though rung removes the ptrace family")
	}
	if err := Validate(&specs.Spec{Process: s.Process, Root: s.Root, Linux: &specs.Linux{Seccomp: f}}); err == nil ||
		!strings.Contains(err.Error(), "seccomp allows mount") {
		t.Errorf("Validate of the CAP_SYS_ADMIN profile = %v, want it to name mount", err)
	}
}
