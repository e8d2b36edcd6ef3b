package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/runtime-spec/specs-go"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/uidrange"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// hardened is the spec internal/bundle builds for a replica running as
// uid 1000: every built-in runtime check must pass on it.
func hardened(t *testing.T, opts ...bundle.Opt) *specs.Spec {
	t.Helper()
	r, err := uidrange.ForTenant(3)
	if err != nil {
		t.Fatal(err)
	}
	base := []bundle.Opt{
		bundle.WithUserNamespace(r),
		bundle.WithProcess([]string{"/bin/app"}, nil, "/"),
		bundle.WithUser(1000, 1000),
	}
	s, err := bundle.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func workload(mod func(*v1.WorkloadSpec)) v1.Workload {
	w := v1.Workload{Metadata: v1.ObjectMeta{Name: "api", Tenant: "acme"}, Spec: v1.WorkloadSpec{
		Image: "registry.example/api@sha256:0000", DataClass: v1.DataInternal, Privilege: v1.PrivilegeStandard,
	}}
	if mod != nil {
		mod(&w.Spec)
	}
	return w
}

func tenant() v1.Tenant {
	return v1.Tenant{Metadata: v1.ObjectMeta{Name: "acme"}, Spec: v1.TenantSpec{Organization: "acme-corp", Trust: v1.TrustUntrusted}}
}

func ids(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	slices.Sort(out)
	return out
}

func TestWorkloadHardenedSpecPasses(t *testing.T) {
	e := newEngine(t, Config{})
	d := e.Workload(WorkloadInput{Tenant: tenant(), Workload: workload(nil), Runtime: hardened(t), Now: now})
	if !d.Allowed || len(d.Findings) != 0 {
		t.Fatalf("hardened spec rejected: %v", d.Findings)
	}
	if len(d.Skipped) != 0 {
		t.Errorf("skipped with a runtime spec: %v", d.Skipped)
	}
	if d.Err() != nil {
		t.Errorf("Err() = %v", d.Err())
	}
	for _, want := range []string{"CIS-4.1", "CIS-5.4", "CIS-5.5", "CIS-5.10", "CIS-5.26", "CIS-5.22", "CIS-5.31", "PSS-baseline-sysctls"} {
		if !slices.Contains(d.Checked, want) {
			t.Errorf("check %s did not run; ran %v", want, d.Checked)
		}
	}
}

func TestWorkloadElevatedAllowListed(t *testing.T) {
	e := newEngine(t, Config{})
	w := workload(func(s *v1.WorkloadSpec) {
		s.Privilege = v1.PrivilegeElevated
		s.Capabilities = []string{"NET_BIND_SERVICE"}
	})
	d := e.Workload(WorkloadInput{Tenant: tenant(), Workload: w, Runtime: hardened(t, bundle.WithCapabilities("CAP_NET_BIND_SERVICE")), Now: now})
	if !d.Allowed {
		t.Fatalf("allow-listed capability rejected: %v", d.Findings)
	}
}

// TestWorkloadChecks breaks one property of a hardened spec or manifest at
// a time and expects exactly the checks that cover it.
func TestWorkloadChecks(t *testing.T) {
	ns := func(typ specs.LinuxNamespaceType, path string) func(*specs.Spec) {
		return func(s *specs.Spec) {
			s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == typ })
			if path != "" {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: typ, Path: path})
			}
		}
	}
	tests := []struct {
		name     string
		manifest func(*v1.WorkloadSpec)
		spec     func(*specs.Spec)
		want     []string
		detail   string // a substring of some finding's detail
	}{
		{name: "root user", spec: func(s *specs.Spec) { s.Process.User.UID = 0 }, want: []string{"CIS-4.1"}},
		{name: "capability not allowed in manifest", manifest: func(w *v1.WorkloadSpec) {
			w.Privilege = v1.PrivilegeElevated
			w.Capabilities = []string{"SYS_ADMIN"}
		}, want: []string{"CIS-5.4"}, detail: "requests SYS_ADMIN"},
		{name: "capabilities for a standard workload", manifest: func(w *v1.WorkloadSpec) {
			w.Capabilities = []string{"CAP_NET_BIND_SERVICE"}
		}, want: []string{"RUNG-elevated-capabilities"}},
		{name: "runtime grants sys_admin", spec: func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
		}, want: []string{"CIS-5.4", "CIS-5.5"}},
		{name: "privileged devices", spec: func(s *specs.Spec) {
			s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		}, want: []string{"CIS-5.18", "CIS-5.5"}},
		{name: "unmasked proc", spec: func(s *specs.Spec) {
			s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		}, want: []string{"CIS-5.5", "PSS-baseline-proc-mount"}},
		{name: "host bind mount", spec: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Source: "/srv", Type: "none", Options: []string{"rbind"}})
		}, want: []string{"CIS-5.6"}, detail: "bind mount of /srv on /data"},
		{name: "docker socket", spec: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/var/run/docker.sock", Source: "/var/run/docker.sock", Type: "bind"})
		}, want: []string{"CIS-5.6"}},
		{name: "host network", spec: ns(specs.NetworkNamespace, ""), want: []string{"CIS-5.10"}},
		{name: "joined pid", spec: ns(specs.PIDNamespace, "/proc/1/ns/pid"), want: []string{"CIS-5.16"}, detail: "joins pid namespace"},
		{name: "host ipc", spec: ns(specs.IPCNamespace, ""), want: []string{"CIS-5.17"}},
		{name: "host uts", spec: ns(specs.UTSNamespace, ""), want: []string{"CIS-5.21"}},
		{name: "host mount ns", spec: ns(specs.MountNamespace, ""), want: []string{"RUNG-mount-namespace"}},
		{name: "host user ns", spec: ns(specs.UserNamespace, ""), want: []string{"CIS-5.31"}},
		{name: "maps host root", spec: func(s *specs.Spec) { s.Linux.UIDMappings[0].HostID = 0 }, want: []string{"CIS-5.31"}},
		{name: "no memory limit", spec: func(s *specs.Spec) { s.Linux.Resources.Memory = nil }, want: []string{"CIS-5.11"}},
		{name: "swap allowed", spec: func(s *specs.Spec) { *s.Linux.Resources.Memory.Swap = -1 }, want: []string{"CIS-5.11"}},
		{name: "no cpu limit", spec: func(s *specs.Spec) { s.Linux.Resources.CPU = nil }, want: []string{"CIS-5.12"}},
		{name: "no pids limit", spec: func(s *specs.Spec) { s.Linux.Resources.Pids = nil }, want: []string{"CIS-5.29"}},
		{name: "no cgroup section", spec: func(s *specs.Spec) { s.Linux.Resources = nil }, want: []string{"CIS-5.11", "CIS-5.12", "CIS-5.18", "CIS-5.29"}},
		{name: "writable root", spec: func(s *specs.Spec) { s.Root.Readonly = false }, want: []string{"CIS-5.13"}},
		{name: "device node", spec: func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/sda", Type: "b", Major: 8}}
		}, want: []string{"CIS-5.18"}},
		{name: "shared propagation", spec: func(s *specs.Spec) { s.Linux.RootfsPropagation = "rshared" }, want: []string{"CIS-5.20"}},
		{name: "no seccomp", spec: func(s *specs.Spec) { s.Linux.Seccomp = nil }, want: []string{"CIS-5.22"}},
		{name: "seccomp allow-all", spec: func(s *specs.Spec) { s.Linux.Seccomp.DefaultAction = specs.ActAllow }, want: []string{"CIS-5.22"}},
		{name: "new privileges", spec: func(s *specs.Spec) { s.Process.NoNewPrivileges = false }, want: []string{"CIS-5.26"}},
		{name: "sysctls", spec: func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"} }, want: []string{"PSS-baseline-sysctls"}},
		{name: "hooks", spec: func(s *specs.Spec) { s.Hooks = &specs.Hooks{} }, want: []string{"RUNG-hooks"}},
	}
	e := newEngine(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := hardened(t)
			if tc.spec != nil {
				tc.spec(s)
			}
			d := e.Workload(WorkloadInput{Tenant: tenant(), Workload: workload(tc.manifest), Runtime: s, Now: now})
			if diff := cmp.Diff(tc.want, ids(d.Findings)); diff != "" {
				t.Errorf("finding IDs (-want +got):\n%s\nfindings: %v", diff, d.Findings)
			}
			if d.Allowed {
				t.Error("Allowed with findings")
			}
			if err := d.Err(); !errors.Is(err, ErrRejected) {
				t.Errorf("Err() = %v, want ErrRejected", err)
			}
			if tc.detail != "" && !slices.ContainsFunc(d.Findings, func(f Finding) bool { return strings.Contains(f.Detail, tc.detail) }) {
				t.Errorf("no finding detail contains %q: %v", tc.detail, d.Findings)
			}
			for _, f := range d.Findings {
				if f.Title == "" || f.Fix == "" || f.Severity == SeverityUnknown {
					t.Errorf("finding %s lacks a title, fix or severity: %+v", f.ID, f)
				}
			}
			// A tenant that blocks only on critical findings weakens none of
			// the platform's guarantees; only running as uid 0 (the image's
			// user, the same control as the image's CIS-4.1) follows it.
			lax := tenant()
			lax.Spec.Images.BlockSeverity = "critical"
			d = e.Workload(WorkloadInput{Tenant: lax, Workload: workload(tc.manifest), Runtime: s, Now: now})
			want, notes := slices.DeleteFunc(slices.Clone(tc.want), func(id string) bool { return id == "CIS-4.1" }), []string(nil)
			if len(want) < len(tc.want) {
				notes = []string{"CIS-4.1"}
			}
			if len(want) == 0 {
				want = nil
			}
			if diff := cmp.Diff(want, ids(d.Findings)); diff != "" {
				t.Errorf("blockSeverity critical: finding IDs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(notes, ids(d.Notes)); diff != "" {
				t.Errorf("blockSeverity critical: note IDs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWorkloadWithoutRuntimeSkips(t *testing.T) {
	e := newEngine(t, Config{})
	d := e.Workload(WorkloadInput{Tenant: tenant(), Workload: workload(nil), Now: now})
	if !d.Allowed {
		t.Fatalf("rejected: %v", d.Findings)
	}
	if !slices.Contains(d.Checked, "CIS-5.4") || slices.Contains(d.Checked, "CIS-5.13") {
		t.Errorf("checked %v: want manifest checks only", d.Checked)
	}
	if !slices.ContainsFunc(d.Skipped, func(s string) bool { return strings.HasPrefix(s, "CIS-5.13:") }) {
		t.Errorf("skipped %v: want CIS-5.13 listed", d.Skipped)
	}
}

func TestUniqueCheckIDs(t *testing.T) {
	e := newEngine(t, Config{})
	seen := map[string]bool{}
	for _, c := range e.Checks() {
		if c.ID == "" || c.Title == "" || c.Fix == "" || c.Severity == SeverityUnknown {
			t.Errorf("incomplete check %+v", c)
		}
		seen[c.ID] = true
	}
	// CIS-4.1 is both a workload (runtime uid) and an image (USER) check.
	var n int
	for range e.Checks() {
		n++
	}
	if len(seen) != n-1 {
		t.Errorf("%d checks, %d distinct IDs: want only CIS-4.1 twice", n, len(seen))
	}
}

func TestSeverity(t *testing.T) {
	for _, s := range []Severity{SeverityUnknown, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical} {
		got, err := ParseSeverity(strings.ToUpper(s.String()))
		if err != nil || got != s {
			t.Errorf("ParseSeverity(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseSeverity("severe"); !errors.Is(err, ErrInvalidSeverity) {
		t.Errorf("ParseSeverity(severe) err = %v", err)
	}
	if !(SeverityCritical > SeverityHigh && SeverityLow > SeverityUnknown) {
		t.Error("severities out of order")
	}
}
