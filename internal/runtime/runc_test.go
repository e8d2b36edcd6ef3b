package runtime_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

func newRunc(t *testing.T) *runtime.OCI {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	d, err := runtime.NewRunc(runtime.Config{Dir: filepath.Join(drivertest.SearchableTempDir(t), "runc")})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// statusField returns the value of one "Name:\tvalue" line of a
// /proc/PID/status dump.
func statusField(t *testing.T, status, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `:\s*(.*)$`).FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("no %s line in status:\n%s", name, status)
	}
	return strings.TrimSpace(m[1])
}

// TestRuncHardeningLive reads the hardening of a running runc container from
// inside it: /proc/self/status and uid_map of the live process, and what it
// can write.
func TestRuncConformance(t *testing.T) {
	d := newRunc(t)
	drivertest.Run(t, d, "runc", drivertest.Busybox(drivertest.Range(t, 1)))
	drivertest.RunCgroups(t, d, "runc", drivertest.Range(t, 1))
	checkNoZombies(t)
}

// checkNoZombies fails if this process (the subreaper) keeps unreaped
// children: every container, sandbox and helper process that ended is
// reaped, orphans after a grace period of a few seconds.
func checkNoZombies(t *testing.T) {
	t.Helper()
	self := fmt.Sprint(os.Getpid())
	var zombies []string
	for deadline := time.Now().Add(8 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		zombies = nil
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if err != nil {
				continue
			}
			s := string(b)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
			if len(f) > 1 && f[0] == "Z" && f[1] == self {
				zombies = append(zombies, s)
			}
		}
		if len(zombies) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, z := range zombies {
		t.Errorf("zombie child: %s", z)
	}
}

// TestRuncCapabilityGrant: an elevated workload running as a non-root user
// gets exactly the allow-listed CAP_NET_BIND_SERVICE (bit 10) in its
// effective and ambient sets, and no other.
func TestRuncCapabilityGrant(t *testing.T) {
	d := newRunc(t)
	id := "capgrant"
	dir := drivertest.BusyboxBundle(t, drivertest.Range(t, 11),
		drivertest.Shell("cat /proc/self/status; id -u"), drivertest.Cgroups(id),
		bundle.WithCapabilities("NET_BIND_SERVICE"), bundle.WithUser(1000, 1000))
	var out, errb bytes.Buffer
	exit, err := runtime.Run(t.Context(), d, id, dir, runtime.IO{Stdout: &out, Stderr: &errb})
	if err != nil || exit.Code != 0 {
		t.Fatalf("run = %+v, %v: %s", exit, err, errb.String())
	}
	got := out.String()
	for _, f := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
		if v := statusField(t, got, f); v != "0000000000000400" {
			t.Errorf("%s = %s, want 0000000000000400 (CAP_NET_BIND_SERVICE only)", f, v)
		}
	}
	if v := statusField(t, got, "Uid"); v != "1000\t1000\t1000\t1000" {
		t.Errorf("Uid = %q, want 1000", v)
	}
}

func TestRuncHardeningLive(t *testing.T) {
	d := newRunc(t)
	r := drivertest.Range(t, 7)
	id := "hardening"
	script := `cat /proc/self/status; echo UIDMAP; cat /proc/self/uid_map; echo GIDMAP; cat /proc/self/gid_map; ` +
		`if touch /x 2>/dev/null; then echo ROOT=writable; else echo ROOT=readonly; fi; ` +
		`if touch /tmp/y; then echo TMP=writable; else echo TMP=readonly; fi; ` +
		`if unshare -U true 2>/dev/null; then echo UNSHARE=allowed; else echo UNSHARE=blocked; fi; ` +
		`if mount -t tmpfs none /tmp 2>/dev/null; then echo MOUNT=allowed; else echo MOUNT=blocked; fi; ` +
		`echo HOSTNAME=$(cat /proc/sys/kernel/hostname); echo SELF=$$ INIT=$(cat /proc/1/comm)`
	dir := drivertest.BusyboxBundle(t, r, drivertest.Shell(script), drivertest.Cgroups(id), bundle.WithHostname("replica-0"))
	var out, errb bytes.Buffer
	exit, err := runtime.Run(t.Context(), d, id, dir, runtime.IO{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("run: %v\nstderr: %s", err, errb.String())
	}
	if exit.Code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", exit.Code, out.String(), errb.String())
	}
	got := out.String()
	t.Logf("live process:\n%s", got)

	for _, c := range []struct{ field, want string }{
		{"Seccomp", "2"},
		{"NoNewPrivs", "1"},
		{"CapEff", "0000000000000000"},
		{"CapPrm", "0000000000000000"},
		{"CapBnd", "0000000000000000"},
		{"CapAmb", "0000000000000000"},
		{"Uid", "0\t0\t0\t0"},
	} {
		if v := statusField(t, got, c.field); v != c.want {
			t.Errorf("%s = %q, want %q", c.field, v, c.want)
		}
	}
	uidmap := strings.Fields(between(got, "UIDMAP\n", "GIDMAP"))
	if want := []string{"0", fmt.Sprint(r.HostUID), fmt.Sprint(r.Size)}; !equal(uidmap, want) {
		t.Errorf("uid_map = %v, want %v (tenant range, never 0→0)", uidmap, want)
	}
	gidmap := strings.Fields(between(got, "GIDMAP\n", "ROOT="))
	if want := []string{"0", fmt.Sprint(r.HostGID), fmt.Sprint(r.Size)}; !equal(gidmap, want) {
		t.Errorf("gid_map = %v, want %v", gidmap, want)
	}
	for _, want := range []string{"ROOT=readonly", "TMP=writable", "UNSHARE=blocked", "MOUNT=blocked", "HOSTNAME=replica-0", "SELF=1 INIT=sh\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestRuncHostView checks the container from the host while it runs: the
// host sees its init as the tenant's base uid, in the cgroup limits of the
// spec.
func TestRuncHostView(t *testing.T) {
	d := newRunc(t)
	r := drivertest.Range(t, 8)
	id := "hostview"
	dir := drivertest.BusyboxBundle(t, r, drivertest.Shell("sleep 60"), drivertest.Cgroups(id), bundle.WithResources(500, 64<<20, 32))
	ctx := t.Context()
	drivertest.Started(t, d, id, dir)
	st, err := d.State(ctx, id)
	if err != nil || st.Status != runtime.Running || st.Pid <= 0 {
		t.Fatalf("state = %+v, %v", st, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	uid := fmt.Sprint(r.HostUID)
	if v := statusField(t, string(status), "Uid"); v != strings.Join([]string{uid, uid, uid, uid}, "\t") {
		t.Errorf("host Uid = %q, want the tenant base %s", v, uid)
	}
	if v := statusField(t, string(status), "NoNewPrivs"); v != "1" {
		t.Errorf("host NoNewPrivs = %s", v)
	}
	checkCgroup(t, id, 64<<20, 32, 50000)
	if err := d.Kill(ctx, id, 9); err != nil {
		t.Fatal(err)
	}
	exit, err := d.Wait(ctx, id)
	if err != nil || exit.Code != 137 || exit.Signal != 9 {
		t.Fatalf("wait = %+v, %v; want code 137 by signal 9", exit, err)
	}
}

// checkCgroup reads the limits of the replica's cgroup (v1 hierarchies
// under /sys/fs/cgroup, where the test cgroups live at /rung-test/ID).
func checkCgroup(t *testing.T, id string, mem, pids, quota int64) {
	t.Helper()
	for _, c := range []struct {
		file string
		want int64
	}{
		{"memory/rung-test/" + id + "/memory.limit_in_bytes", mem},
		{"memory/rung-test/" + id + "/memory.memsw.limit_in_bytes", mem},
		{"pids/rung-test/" + id + "/pids.max", pids},
		{"cpu/rung-test/" + id + "/cpu.cfs_quota_us", quota},
		{"cpu/rung-test/" + id + "/cpu.cfs_period_us", 100000},
	} {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", c.file))
		if err != nil {
			t.Errorf("cgroup file: %v", err)
			continue
		}
		if got := strings.TrimSpace(string(b)); got != fmt.Sprint(c.want) {
			t.Errorf("%s = %s, want %d", c.file, got, c.want)
		}
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		s = s[:j]
	}
	return s
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
