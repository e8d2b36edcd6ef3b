package microvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/testio"
	"rung.dev/rung/internal/verify"
)

// The vm tier's tests boot the distribution's kernel under TCG (no KVM
// here; the driver runs it only with AllowEmulated, the test flag). A boot
// takes about 5 s on an idle machine and a minute or more on a loaded CI
// machine: every wait is generous, nothing is timed.
const bootDeadline = 10 * time.Minute

var (
	initOnce sync.Once
	initPath string
	initErr  error
)

// rungVM builds cmd/rung-vm once per test binary.
func rungVM(t *testing.T) string {
	t.Helper()
	initOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rung-vm-bin-")
		if err != nil {
			initErr = err
			return
		}
		initPath, initErr = drivertest.BuildVMInit(dir)
	})
	if initErr != nil {
		t.Fatal(initErr)
	}
	return initPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if initPath != "" {
		os.RemoveAll(filepath.Dir(initPath))
	}
	os.Exit(code)
}

// requireVM skips when QEMU or a guest kernel is missing (CI installs
// qemu-system-x86 and linux-image-amd64) and returns a driver that may
// emulate.
func requireVM(t *testing.T, o Options) *Driver {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireQEMU(t, DefaultBinary)
	drivertest.RequireBinary(t, "busybox")
	if o.Dir == "" {
		o.Dir = filepath.Join(drivertest.SearchableTempDir(t), "vm")
	}
	o.AllowEmulated = true
	if o.Init == "" {
		o.Init = rungVM(t)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	a := d.Detect(t.Context())
	drivertest.RequireVMTier(t, a.Available, a.Reason)
	t.Logf("vm tier: %+v", a)
	return d
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), bootDeadline)
	t.Cleanup(cancel)
	return ctx
}

// procStatus reads fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestVMReplica boots one replica: its output is the guest kernel's
// /proc/version (not the host's), it exits with the code its workload
// chose (3, after a SIGTERM forwarded into the guest), and while it runs
// QEMU is jailed: a non-root uid, seccomp filter mode, no_new_privs, its
// own namespaces, the replica's cgroup with the guest's memory plus the
// overhead.
func TestVMReplica(t *testing.T) {
	d := requireVM(t, Options{})
	ctx := ctxT(t)
	r := drivertest.Range(t, 31)
	id := "vm-replica"
	dir := drivertest.BusyboxBundle(t, r,
		drivertest.Shell(`trap 'echo got TERM; exit 3' TERM; cat /proc/version; echo to-stderr >&2; id; echo ready; while true; do sleep 1; done`),
		drivertest.Cgroups(id), bundle.WithUser(1000, 1000), bundle.WithResources(1000, 128<<20, 64))
	var stdout, stderr testio.Buffer
	if err := d.Create(ctx, id, dir, runtime.IO{Stdout: &stdout, Stderr: &stderr}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Delete(context.WithoutCancel(ctx), id) })
	st, err := d.State(ctx, id)
	if err != nil || st.Status != runtime.Created || st.Pid == 0 {
		t.Fatalf("state after create = %+v, %v", st, err)
	}
	if err := d.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the workload's ready line", func() bool { return strings.Contains(stdout.String(), "ready") })
	st, _ = d.State(ctx, id)
	if st.Status != runtime.Running {
		t.Fatalf("state = %+v, want running", st)
	}

	// The guest's kernel, not the host's.
	host, _ := os.ReadFile("/proc/version")
	out := stdout.String()
	if !strings.Contains(out, "Linux version") || strings.Contains(out, strings.TrimSpace(string(host))) {
		t.Errorf("guest /proc/version = %q; host's is %q", out, host)
	}
	if hello, err := d.Guest(id); err != nil || hello.Release == "" || !strings.Contains(out, hello.Release) {
		t.Errorf("guest hello = %+v, %v", hello, err)
	}
	if !strings.Contains(out, "uid=1000 gid=1000") {
		t.Errorf("workload user: %q, want uid=1000 gid=1000", out)
	}
	if !strings.Contains(stderr.String(), "to-stderr") {
		t.Errorf("stderr = %q", stderr.String())
	}

	// exec runs through the same channel, as the workload's user.
	var eout testio.Buffer
	code, err := d.ExecProcess(ctx, id, nil, []string{"id"}, runtime.ExecIO{Stdout: &eout, Stderr: &eout})
	if err != nil || code != 0 || !strings.Contains(eout.String(), "uid=1000") {
		t.Errorf("exec id = %d, %v, %q", code, err, eout.String())
	}
	code, err = d.ExecProcess(ctx, id, nil, []string{"sh", "-c", "exit 7"}, runtime.ExecIO{})
	if err != nil || code != 7 {
		t.Errorf("exec exit 7 = %d, %v", code, err)
	}
	code, err = d.ExecProcess(ctx, id, nil, []string{"no-such-program"}, runtime.ExecIO{})
	if code != runtime.ExitCodeNotFound || !errors.Is(err, runtime.ErrExecNotFound) {
		t.Errorf("exec of a missing program = %d, %v; want 127, ErrExecNotFound", code, err)
	}

	// The jail, from the host.
	pid := st.Pid
	s := procStatus(t, pid)
	t.Logf("qemu pid %d: Uid %s, Seccomp %s, NoNewPrivs %s", pid, s["Uid"], s["Seccomp"], s["NoNewPrivs"])
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); !strings.HasPrefix(string(comm), "qemu-system") {
		t.Errorf("pid %d is %q, want qemu", pid, comm)
	}
	wantUID := fmt.Sprint(r.HostUID + 1000)
	if f := strings.Fields(s["Uid"]); len(f) != 4 || f[0] != wantUID || f[1] != wantUID || f[3] != wantUID {
		t.Errorf("qemu Uid = %q, want %s (the replica's user in the tenant's range)", s["Uid"], wantUID)
	}
	if s["Seccomp"] != "2" {
		t.Errorf("qemu Seccomp = %q, want 2 (filter)", s["Seccomp"])
	}
	if s["NoNewPrivs"] != "1" {
		t.Errorf("qemu NoNewPrivs = %q, want 1", s["NoNewPrivs"])
	}
	if s["CapEff"] != "0000000000000000" {
		t.Errorf("qemu CapEff = %q, want none", s["CapEff"])
	}
	for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil || its == mine {
			t.Errorf("qemu %s namespace = %q (%v), the host's is %q", ns, its, err, mine)
		}
	}
	if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); err != nil || root == "/" {
		// The pivoted root shows as "/" from its own mount namespace but
		// its /usr is read-only and /home is absent.
		t.Logf("qemu root %q %v", root, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/home", pid)); err == nil {
		t.Errorf("qemu sees the host's /home: its root is not the jail")
	}
	rec, err := d.readRecord(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(128<<20) + OverheadTCG; rec.Limits.CgroupMem != want || rec.Limits.GuestMiB != 128 {
		t.Errorf("limits = %+v, want guest 128 MiB and cgroup %d", rec.Limits, want)
	}
	if got := cgroupMemoryLimit(t, pid); got != rec.Limits.CgroupMem {
		t.Errorf("qemu's cgroup memory limit = %d, want %d", got, rec.Limits.CgroupMem)
	}

	// rung verify's proof, from the state file and the live process.
	vs, err := Open(d.opt.Dir)
	if err != nil {
		t.Fatal(err)
	}
	status, err := vs.Status(id)
	if err != nil || status.Pid != pid {
		t.Fatalf("status = %+v, %v; want pid %d", status, err, pid)
	}
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	ver, _ := os.ReadFile("/proc/sys/kernel/version")
	hostKernel := strings.TrimSpace(string(rel)) + " " + strings.TrimSpace(string(ver))
	vmv := verify.VM{ID: id, Pid: status.Pid, UID: status.UID, Memory: status.Limits.CgroupMem, CPUQuota: status.Limits.CPUQuota,
		CPUPeriod: int64(status.Limits.CPUPeriod), Pids: status.Limits.PIDs, Emulated: status.Emulated,
		GuestKernel: status.Guest.Release + " " + status.Guest.Version, HostKernel: hostKernel}
	proof, err := verify.Host{}.VMReplica(ctx, vmv)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range proof.Findings {
		t.Logf("%s", f)
	}
	if !proof.Holds() || len(proof.Findings) < 9 || !slices.Contains(proof.Weaknesses, verify.Emulated) {
		t.Errorf("vm proof holds=%v findings=%d weaknesses=%q; want every property to hold and TCG named as a weakness", proof.Holds(), len(proof.Findings), proof.Weaknesses)
	}
	// The same proof fails when what it checks is not so.
	bad := vmv
	bad.HostKernel, bad.UID = bad.GuestKernel, 0
	proof, err = verify.Host{}.VMReplica(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, f := range proof.Failures() {
		failed = append(failed, string(f.Property))
	}
	if diff := cmp.Diff([]string{"not-host-root", "guest-kernel"}, failed); diff != "" {
		t.Errorf("failing properties with the host's kernel and uid 0 expected (-want +got):\n%s", diff)
	}

	// SIGTERM goes to the workload inside; its trap exits 3.
	if err := d.Kill(ctx, id, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exit, err := d.Wait(ctx, id)
	if err != nil || exit.Code != 3 {
		t.Fatalf("exit = %+v, %v; want code 3", exit, err)
	}
	if !strings.Contains(stdout.String(), "got TERM") {
		t.Errorf("the trap's output is missing: %q", stdout.String())
	}
	if st, _ := d.State(ctx, id); st.Status != runtime.Stopped {
		t.Errorf("state after exit = %+v", st)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("qemu %d still runs after the guest exited", pid)
	}
	if err := d.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.vmDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vm directory left after delete: %v", err)
	}
}

// TestVMMemoryLimit: the replica's memory limit is the guest's RAM, so a
// workload that allocates past it is killed by the guest's OOM killer
// (exit 137), and the guest reports less RAM than the limit.
func TestVMMemoryLimit(t *testing.T) {
	d := requireVM(t, Options{})
	ctx := ctxT(t)
	r := drivertest.Range(t, 32)
	id := "vm-oom"
	// Each loop doubles a shell variable: 1 KiB → 256 MiB, past 128 MiB.
	dir := drivertest.BusyboxBundle(t, r,
		drivertest.Shell(`grep MemTotal /proc/meminfo; x=0123456789abcdef; x=$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x$x; i=0; while [ $i -lt 18 ]; do x=$x$x; i=$((i+1)); done; echo survived ${#x}`),
		drivertest.Cgroups(id), bundle.WithResources(1000, 128<<20, 64))
	var out testio.Buffer
	exit, err := runtime.Run(ctx, d, id, dir, runtime.IO{Stdout: &out, Stderr: &out})
	t.Logf("exit %+v, %v; output %q", exit, err, out.String())
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 137 || strings.Contains(out.String(), "survived") {
		t.Errorf("exit = %+v, output %q; want 137 (killed by the guest's OOM killer)", exit, out.String())
	}
	var kib int64
	if _, err := fmt.Sscanf(strings.TrimSpace(out.String()), "MemTotal: %d kB", &kib); err != nil || kib <= 0 || kib > 128<<10 {
		t.Errorf("guest MemTotal = %d kB (%v), want at most 128 MiB", kib, err)
	}
}

// TestVMBadInput: a too-large image and a guest that never reports fail
// with clear errors and leave nothing behind; a missing kernel and one
// without modules make the tier unavailable with the reason.
func TestVMBadInput(t *testing.T) {
	d := requireVM(t, Options{MaxDiskMiB: 40, BootTimeout: time.Second})
	ctx := ctxT(t)
	r := drivertest.Range(t, 33)

	id := "vm-big"
	dir := drivertest.BusyboxBundle(t, r, drivertest.Shell("true"), drivertest.Cgroups(id))
	big := make([]byte, 48<<20)
	if err := os.WriteFile(filepath.Join(dir, "rootfs", "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	err := d.Create(ctx, id, dir, runtime.IO{Stdout: io.Discard, Stderr: io.Discard})
	if !errors.Is(err, ErrDiskTooLarge) {
		t.Errorf("create with a 48 MiB file and a 40 MiB disk limit = %v, want ErrDiskTooLarge", err)
	}
	assertGone(t, d, id, "/rung-test/"+id)

	// One second is not enough for any boot under TCG: the boot timeout.
	id = "vm-timeout"
	dir = drivertest.BusyboxBundle(t, r, drivertest.Shell("true"), drivertest.Cgroups(id))
	if err := d.Create(ctx, id, dir, runtime.IO{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	st, _ := d.State(ctx, id)
	err = d.Start(ctx, id)
	if !errors.Is(err, ErrBootTimeout) {
		t.Errorf("start with a 1s boot timeout = %v, want ErrBootTimeout", err)
	}
	t.Logf("boot timeout: %v", err)
	if err := syscall.Kill(st.Pid, 0); err == nil {
		t.Errorf("qemu %d still runs after the boot timeout", st.Pid)
	}
	if err := d.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	assertGone(t, d, id, "/rung-test/"+id)

	for name, o := range map[string]Options{
		"missing kernel": {Kernel: "/nonexistent/vmlinuz-1.0"},
		"no modules":     {Kernel: fakeKernel(t)},
	} {
		o.Dir, o.AllowEmulated, o.Init = t.TempDir(), true, rungVM(t)
		nd, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		a := nd.Detect(ctx)
		t.Logf("%s: %+v", name, a)
		if a.Available || !strings.Contains(a.Reason, "guest kernel") {
			t.Errorf("%s: Detect = %+v, want unavailable naming the guest kernel", name, a)
		}
		if err := nd.Create(ctx, "x", dir, runtime.IO{}); !errors.Is(err, runtime.ErrUnavailable) {
			t.Errorf("%s: create = %v, want ErrUnavailable", name, err)
		}
	}
}

// fakeKernel is a vmlinuz file whose release has no module tree.
func fakeKernel(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "vmlinuz-0.0.0-none")
	if err := os.WriteFile(p, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertGone checks that replica id left no directory, cgroup or record.
func assertGone(t *testing.T, d *Driver, id, cg string) {
	t.Helper()
	if _, err := os.Stat(d.vmDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: vm directory left: %v", id, err)
	}
	for _, c := range []string{"memory", "pids", "cpu"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, cg)); err == nil {
			t.Errorf("%s: cgroup %s/%s left", id, c, cg)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", cg, "cgroup.procs")); err == nil {
		t.Errorf("%s: cgroup %s left", id, cg)
	}
	if _, err := d.State(t.Context(), id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("%s: state after failure = %v, want ErrNotFound", id, err)
	}
}

// cgroupMemoryLimit reads the memory limit of pid's cgroup (v1 or v2).
func cgroupMemoryLimit(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		var p string
		switch {
		case strings.Contains(","+f[1]+",", ",memory,"):
			p = filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.limit_in_bytes")
		case f[0] == "0" && f[1] == "":
			p = filepath.Join("/sys/fs/cgroup", f[2], "memory.max")
		default:
			continue
		}
		v, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var n int64
		fmt.Sscan(string(v), &n)
		return n
	}
	t.Fatalf("no memory cgroup for pid %d: %s", pid, b)
	return 0
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestVMAgentKilled: kill -9 of the process that drives a VM (the agent)
// leaves its QEMU running, and the next driver on the same directory
// adopts it: the same QEMU pid runs, exec works through the reconnected
// channel, the workload's output reaches its log, SIGTERM reaches the
// workload and its exit code comes back, and Delete leaves nothing.
func TestVMAgentKilled(t *testing.T) {
	if os.Getenv("RUNG_VM_AGENT_DIR") != "" {
		t.Skip("helper process")
	}
	d := requireVM(t, Options{})
	dir := d.opt.Dir
	ctx := ctxT(t)
	r := drivertest.Range(t, 34)
	id := "vm-orphan"
	bdir := drivertest.BusyboxBundle(t, r, drivertest.Shell("trap 'exit 5' TERM; while true; do echo tick; sleep 1; done"), drivertest.Cgroups(id))
	cmd, pid := drivertest.StartVMHelper(t, ctx, "TestVMAgentHelper",
		"RUNG_VM_AGENT_DIR="+dir, "RUNG_VM_AGENT_BUNDLE="+bdir, "RUNG_VM_AGENT_INIT="+d.opt.Init)
	t.Logf("helper %d runs qemu %d", cmd.Process.Pid, pid)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("qemu %d not running: %v", pid, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// QEMU outlives its agent.
	if startTime(pid) == 0 {
		t.Fatalf("qemu %d died with its agent; want it kept for adoption", pid)
	}

	// The agent's next start adopts it: the same QEMU, running.
	d2, err := New(Options{Dir: dir, AllowEmulated: true, Init: d.opt.Init})
	if err != nil {
		t.Fatal(err)
	}
	st, err := d2.State(ctx, id)
	if err != nil || st.Status != runtime.Running || st.Pid != pid {
		t.Fatalf("state after the agent's restart = %+v, %v; want running, qemu pid %d", st, err, pid)
	}
	// exec through the reconnected channel.
	var eout testio.Buffer
	code, err := d2.ExecProcess(ctx, id, nil, []string{"echo", "adopted"}, runtime.ExecIO{Stdout: &eout, Stderr: &eout})
	if err != nil || code != 0 || !strings.Contains(eout.String(), "adopted") {
		t.Errorf("exec in the adopted vm = %d, %v, %q", code, err, eout.String())
	}
	// The workload's output after adoption reaches the replica's log.
	waitFor(t, ctx, "the adopted workload's output in its log", func() bool {
		rc, err := d2.Logs(ctx, id)
		if err != nil {
			return false
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return strings.Contains(string(b), "tick")
	})
	// Stop: SIGTERM reaches the workload, which exits with its own code.
	if err := d2.Kill(ctx, id, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ex, err := d2.Wait(ctx, id)
	if err != nil || ex.Code != 5 {
		t.Errorf("wait after SIGTERM = %+v, %v; want exit 5 from the workload's trap", ex, err)
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, 0, nil) // this process is QEMU's reaper now
	if err := d2.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	assertGone(t, d2, id, "/rung-test/"+id)
}

// TestVMAgentHelper is the agent of TestVMAgentKilled, in a process of its
// own: it starts a VM, prints QEMU's PID and waits to be killed.
func TestVMAgentHelper(t *testing.T) {
	dir := os.Getenv("RUNG_VM_AGENT_DIR")
	if dir == "" {
		t.Skip("run by TestVMAgentKilled")
	}
	d, err := New(Options{Dir: dir, AllowEmulated: true, Init: os.Getenv("RUNG_VM_AGENT_INIT")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var out testio.Buffer
	if err := d.Create(ctx, "vm-orphan", os.Getenv("RUNG_VM_AGENT_BUNDLE"), runtime.IO{Stdout: &out, Stderr: &out}); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, "vm-orphan"); err != nil {
		t.Fatal(err)
	}
	st, err := d.State(ctx, "vm-orphan")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("QEMU_PID=%d\n", st.Pid)
	select {}
}
