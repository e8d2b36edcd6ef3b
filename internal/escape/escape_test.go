package escape_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"rung.dev/rung/internal/bundle"
	rt "rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/verify"
)

// Tenant indexes of the escape tests (ranges no other test uses).
const (
	tenantA = 60 + iota
	tenantB
	tenantNeighbour
)

// TestWriteRootfsAndMount: the root filesystem is read-only and nothing can
// be mounted, remounted or bind-mounted; /tmp, the one writable place,
// works (the control).
func TestWriteRootfsAndMount(t *testing.T) {
	forEachTier(t, func(t *testing.T, tr tier) {
		id := "escape-fs-" + tr.bin
		script := attemptShell + `
try control-write-tmp touch /tmp/ok
try write-root touch /escaped
try append-file sh -c 'echo x >> /etc/group'
try remove-file rm /etc/passwd
try remount-root-rw mount -o remount,rw /
try mount-tmpfs mount -t tmpfs none /mnt
try mount-proc mount -t proc proc /mnt
try bind-mount mount --bind /tmp /mnt
try unshare-mount unshare -m true
try write-proc-sys sh -c 'echo 1 > /proc/sys/kernel/sysrq'
try write-sys sh -c 'echo x > /sys/kernel/uevent_helper'
`
		dir := replicaBundle(t, drivertest.Range(t, tenantA), id, script, nil)
		before, err := os.ReadFile(filepath.Join(dir, "rootfs", "bin", "busybox"))
		if err != nil {
			t.Fatal(err)
		}
		code, out := run(t, tr, id, dir)
		t.Logf("exit %d:\n%s", code, out)
		got := attempts(out)
		if got["control-write-tmp"] != "ok" {
			t.Fatalf("control: writing /tmp = %q, want ok", got["control-write-tmp"])
		}
		requireFailed(t, got, map[string]string{
			"write-root":      "Read-only file system",
			"append-file":     "Read-only file system",
			"remove-file":     "Read-only file system",
			"remount-root-rw": "",
			"mount-tmpfs":     "",
			"mount-proc":      "",
			"bind-mount":      "",
			"unshare-mount":   "Operation not permitted",
			"write-proc-sys":  "",
			"write-sys":       "",
		})
		// And the host's copy is untouched.
		after, err := os.ReadFile(filepath.Join(dir, "rootfs", "bin", "busybox"))
		if err != nil || !slices.Equal(before, after) {
			t.Errorf("busybox changed on the host (err %v)", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "rootfs", "escaped")); !os.IsNotExist(err) {
			t.Errorf("/escaped exists in the rootfs on the host: %v", err)
		}
	})
}

// TestOtherTenant: tenant A cannot read, list or signal tenant B's running
// replica, whatever path it tries: B's host paths, /proc/*/root, "..",
// B's bundle. B's secret never shows up in A's output and B keeps running.
func TestOtherTenant(t *testing.T) {
	forEachTier(t, func(t *testing.T, tr tier) {
		secret := fmt.Sprintf("rung-secret-of-b-%d", os.Getpid())
		idB := "escape-tenant-b-" + tr.bin
		dirB := replicaBundle(t, drivertest.Range(t, tenantB), idB, "sleep 600",
			map[string]string{"home/user/secret": secret}, bundle.WithResources(250, 128<<20, 96))
		pidB := start(t, tr, idB, dirB)
		rootB := filepath.Join(dirB, "rootfs")

		idA := "escape-tenant-a-" + tr.bin
		script := attemptShell + fmt.Sprintf(`B=%s
try host-path cat $B/home/user/secret
try proc-1-root cat /proc/1/root$B/home/user/secret
try dot-dot cat /../../../../..$B/home/user/secret
try bundle-config cat /../../../..%s/config.json
try proc-walk sh -c 'cat /proc/*/root'$B'/home/user/secret'
try list-b ls $B/home/user
try proc-fd-walk sh -c 'ls -l /proc/*/fd/ | grep -F "$0"' %s
`, rootB, dirB, rootB)
		if pidB > 100 { // a host PID that cannot also be one of A's own few
			script += fmt.Sprintf("try signal-b kill -9 %d\n", pidB)
		}
		// Every data file A can see (not /dev: its zero and urandom never end).
		script += "grep -rsl " + secret + " /etc /home /tmp /mnt 2>/dev/null; echo GREP-DONE\n"
		dirA := replicaBundle(t, drivertest.Range(t, tenantA), idA, script, nil)
		code, out := run(t, tr, idA, dirA)
		t.Logf("exit %d:\n%s", code, out)
		got := attempts(out)
		want := map[string]string{
			"host-path":     "No such file or directory",
			"proc-1-root":   "", // runc: no such file; gVisor: permission denied
			"dot-dot":       "No such file or directory",
			"bundle-config": "No such file or directory",
			"proc-walk":     "",
			"list-b":        "No such file or directory",
			"proc-fd-walk":  "",
		}
		if pidB > 100 {
			want["signal-b"] = "No such process"
		}
		requireFailed(t, got, want)
		if !strings.Contains(out, "GREP-DONE") {
			t.Error("the search for B's secret did not run")
		}
		if strings.Contains(out, secret) {
			t.Errorf("tenant A read tenant B's secret:\n%s", out)
		}
		st, err := tr.d.State(t.Context(), idB)
		if err != nil || st.Status != rt.Running || st.Pid != pidB {
			t.Errorf("tenant B = %+v, %v; want still running as pid %d", st, err, pidB)
		}
		if b, err := os.ReadFile(filepath.Join(rootB, "home/user/secret")); err != nil || string(b) != secret {
			t.Errorf("B's secret on the host = %q, %v", b, err)
		}
	})
}

// TestHostProcesses: a replica sees only its own PID namespace: /proc and
// ps list a handful of its own processes, none of the host's (a marked host
// process is invisible and cannot be signalled).
func TestHostProcesses(t *testing.T) {
	forEachTier(t, func(t *testing.T, tr tier) {
		marker := fmt.Sprintf("rung-escape-host-marker-%s-%d", tr.bin, os.Getpid())
		// One host process with the marker on its command line: a shell
		// blocked in its read builtin until the test closes its stdin.
		host := exec.CommandContext(t.Context(), "/bin/sh", "-c", "read line", marker)
		stdin, err := host.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := host.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); _ = host.Wait() })

		id := "escape-ps-" + tr.bin
		script := attemptShell + fmt.Sprintf(`echo PIDS=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')
echo PS-LINES=$(ps -o pid | wc -l)
echo CMDLINES-BEGIN; cat /proc/[0-9]*/cmdline | tr '\0' ' '; echo; echo CMDLINES-END
echo INIT=$(cat /proc/1/cmdline | tr '\0' ' ')
try signal-host kill -0 %d
`, host.Process.Pid)
		code, out := run(t, tr, id, replicaBundle(t, drivertest.Range(t, tenantA), id, script, nil))
		t.Logf("exit %d:\n%s", code, out)
		if strings.Contains(out, marker) && !strings.Contains(out, "kill -0") {
			t.Errorf("the host's marked process is visible:\n%s", out)
		}
		if strings.Contains(between(out, "CMDLINES-BEGIN", "CMDLINES-END"), marker) {
			t.Errorf("the host's marked process is visible in /proc")
		}
		pids := strings.Fields(attempts(out)["PIDS"])
		if len(pids) == 0 || len(pids) > 8 {
			t.Errorf("visible pids %v, want a handful of the replica's own", pids)
		}
		for _, p := range pids {
			if n, _ := strconv.Atoi(p); n > 64 {
				t.Errorf("visible pid %d: not from the replica's own PID namespace", n)
			}
		}
		if !strings.HasPrefix(attempts(out)["INIT"], "/bin/sh -c exec 2>&1") {
			t.Errorf("pid 1 is %q, want the replica's own init", attempts(out)["INIT"])
		}
		if n, _ := strconv.Atoi(attempts(out)["PS-LINES"]); n < 2 || n > 9 {
			t.Errorf("ps lists %d lines, want the replica's few processes", n)
		}
		if host.Process.Pid > 64 {
			requireFailed(t, attempts(out), map[string]string{"signal-host": "No such process"})
		}
	})
}

// TestRaiseCapability: root in the replica holds no capability and cannot
// get one: chroot, mknod of a disk, su to another user, setpriv's caps,
// unshare and nsenter all fail, and CapEff reads 0 before and after, inside
// and from the host (runc's init, or gVisor's sentry).
func TestRaiseCapability(t *testing.T) {
	forEachTier(t, func(t *testing.T, tr tier) {
		id := "escape-caps-" + tr.bin
		script := attemptShell + `echo CAPEFF-BEFORE=$(grep CapEff /proc/self/status | cut -f2)
try chroot chroot / /bin/true
try mknod-disk mknod /tmp/sda b 8 0
try read-disk head -c 512 /tmp/sda
try setpriv-caps setpriv --inh-caps +sys_admin --ambient-caps +sys_admin true
try su su user -c id
try unshare-user unshare -U true
try unshare-pid unshare -p -f true
try nsenter nsenter -t 1 -m true
try chown-host chown 0:0 /tmp/ok
echo CAPEFF-AFTER=$(grep CapEff /proc/self/status | cut -f2)
echo CAPBND-AFTER=$(grep CapBnd /proc/self/status | cut -f2)
echo DONE
exec sleep 600
`
		pid := start(t, tr, id, replicaBundle(t, drivertest.Range(t, tenantA), id, script, nil))
		out := logsUntil(t, tr, id, "DONE")
		t.Logf("%s", out)
		got := attempts(out)
		for _, k := range []string{"CAPEFF-BEFORE", "CAPEFF-AFTER", "CAPBND-AFTER"} {
			if got[k] != "0000000000000000" {
				t.Errorf("%s = %q, want 0000000000000000", k, got[k])
			}
		}
		want := map[string]string{
			"chroot":       "Operation not permitted",
			"read-disk":    "",
			"setpriv-caps": "",
			"su":           "Operation not permitted",
			"unshare-user": "Operation not permitted",
			"unshare-pid":  "Operation not permitted",
			"nsenter":      "",
		}
		// gVisor makes the node on its own tmpfs (it has no host devices to
		// reach: reading it fails); the host kernel refuses mknod at once.
		if !tr.sandbox() {
			want["mknod-disk"] = "Operation not permitted"
		}
		requireFailed(t, got, want)
		if got["chown-host"] != "fail:chown: /tmp/ok: No such file or directory" && !strings.HasPrefix(got["chown-host"], "fail:") {
			t.Errorf("chown-host = %q", got["chown-host"])
		}

		// From the host: the live process still holds nothing it should not.
		r, err := verify.Inspect(t.Context(), pid)
		if err != nil {
			t.Fatal(err)
		}
		if tr.sandbox() {
			if held := r.Caps.Effective | r.Caps.Permitted; held&^0x240000 != 0 {
				t.Errorf("sentry holds %v after the attempts", held.Names())
			}
		} else if r.Caps != (verify.Caps{}) {
			t.Errorf("init capabilities after the attempts %+v, want none", r.Caps)
		}
		if r.NoNewPrivs != 1 || r.Seccomp != 2 || r.UID.Effective == 0 {
			t.Errorf("live: NoNewPrivs %d Seccomp %d uid %d", r.NoNewPrivs, r.Seccomp, r.UID.Effective)
		}
	})
}

// TestNonRootUser: a replica running as user 1000 cannot become root: su
// (not setuid: no_new_privs and nosuid), setuid(0) and capset fail.
func TestNonRootUser(t *testing.T) {
	forEachTier(t, func(t *testing.T, tr tier) {
		id := "escape-user-" + tr.bin
		script := attemptShell + `echo ID=$(id -u):$(id -g)
try su-root su root -c id
try write-etc sh -c 'echo x >> /etc/passwd'
/probe syscalls
echo CAPEFF=$(grep CapEff /proc/self/status | cut -f2)
`
		code, out := run(t, tr, id, replicaBundle(t, drivertest.Range(t, tenantA), id, script, nil, bundle.WithUser(1000, 1000)))
		t.Logf("exit %d:\n%s", code, out)
		got := attempts(out)
		if got["ID"] != "1000:1000" || got["CAPEFF"] != "0000000000000000" {
			t.Errorf("id %q CapEff %q, want 1000:1000 and none", got["ID"], got["CAPEFF"])
		}
		requireFailed(t, got, map[string]string{"su-root": "", "write-etc": ""})
		res := probeResults(out)
		for _, name := range []string{"setuid-0", "capset"} {
			if res[name] != "EPERM" {
				t.Errorf("%s as user 1000 = %q, want EPERM", name, res[name])
			}
		}
	})
}

// TestBlockedSyscalls: system calls that Docker's default seccomp profile
// refuses without the capability that gates them fail with EPERM, made raw
// by the probe (no libc, no busybox in between). gVisor lets mknod make an
// inert node on its own tmpfs; opening it still fails.
func TestBlockedSyscalls(t *testing.T) {
	forEachTier(t, func(t *testing.T, tr tier) {
		id := "escape-sys-" + tr.bin
		code, out := run(t, tr, id, replicaBundle(t, drivertest.Range(t, tenantA), id, "/probe syscalls; echo PROBE-EXIT=$?", nil))
		t.Logf("exit %d:\n%s", code, out)
		if !strings.Contains(out, "PROBE-EXIT=0") {
			t.Fatalf("the probe did not run to the end:\n%s", out)
		}
		res := probeResults(out)
		names := []string{
			"unshare-user", "unshare-mount", "unshare-net", "setns", "mount", "keyctl", "add_key", "ptrace", "bpf",
			"perf_event_open", "open_by_handle_at", "init_module", "kexec_load", "reboot", "swapon", "pivot_root",
			"chroot", "mknod", "open-device", "clock_settime", "sethostname", "capset", "setuid-0",
		}
		var gotNames []string
		for n := range res {
			gotNames = append(gotNames, n)
		}
		sort.Strings(gotNames)
		wantNames := slices.Clone(names)
		sort.Strings(wantNames)
		if !slices.Equal(gotNames, wantNames) {
			t.Errorf("probe attempted %v, want %v", gotNames, wantNames)
		}
		for _, n := range names {
			want := []string{"EPERM"}
			switch {
			case n == "setuid-0":
				want = []string{"ok"} // root of its own namespace already; TestNonRootUser tries it as 1000
			case n == "open-device" && tr.sandbox():
				want = []string{"ENXIO", "ENOENT"} // gVisor 2022: no such device; current: not found
			case n == "open-device":
				want = []string{"ENOENT"} // mknod failed
			case n == "mknod" && tr.sandbox():
				want = []string{"ok", "EPERM"} // gVisor's own tmpfs node (2022), or refused (current)
			}
			if !slices.Contains(want, res[n]) {
				t.Errorf("%s = %q, want %v", n, res[n], want)
			}
		}
	})
}

// probeResults parses the probe's "NAME RESULT" lines.
func probeResults(out string) map[string]string {
	m := map[string]string{}
	re := regexp.MustCompile(`(?m)^([a-z_0-9-]+) (ok|E[A-Z]+|errno\d+)$`)
	for _, s := range re.FindAllStringSubmatch(out, -1) {
		m[s[1]] = s[2]
	}
	return m
}

func between(s, from, to string) string {
	_, s, _ = strings.Cut(s, from)
	s, _, _ = strings.Cut(s, to)
	return s
}
