package runtime_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

func newRunsc(t *testing.T, cfg runtime.Config) *runtime.OCI {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runsc")
	cfg.Dir = filepath.Join(drivertest.SearchableTempDir(t), "runsc")
	d, err := runtime.NewRunsc(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRunscConformance(t *testing.T) {
	d := newRunsc(t, runtime.Config{})
	drivertest.Run(t, d, "runsc", drivertest.Busybox(drivertest.Range(t, 2)))
	drivertest.RunCgroups(t, d, "runsc", drivertest.Range(t, 2))
	checkNoZombies(t)
}

// TestRunscInsideLive reads what the workload sees inside gVisor. gVisor's
// /proc/self/status has no Seccomp or NoNewPrivs lines and its uid_map
// shows the identity map (the sentry implements its own user namespace), so
// the inside view proves capabilities, the read-only root, the PID
// namespace, and the seccomp filter by its effect: with --oci-seccomp the
// sentry enforces Docker's profile, so unshare(CLONE_NEWUSER) fails, which
// gVisor alone would allow.
func TestRunscInsideLive(t *testing.T) {
	script := `cat /proc/self/status; ` +
		`if touch /x 2>/dev/null; then echo ROOT=writable; else echo ROOT=readonly; fi; ` +
		`if touch /tmp/y; then echo TMP=writable; else echo TMP=readonly; fi; ` +
		`if unshare -U true 2>/dev/null; then echo UNSHARE=allowed; else echo UNSHARE=blocked; fi; ` +
		`if mount -t tmpfs none /tmp 2>/dev/null; then echo MOUNT=allowed; else echo MOUNT=blocked; fi; ` +
		`echo SELF=$$ INIT=$(cat /proc/1/comm)`
	for _, c := range []struct {
		name    string
		cfg     runtime.Config
		unshare string
	}{
		{"oci-seccomp", runtime.Config{}, "UNSHARE=blocked"},
		// Control: the same workload without --oci-seccomp shows that the
		// blocked unshare above is the filter's doing.
		{"no-oci-seccomp", runtime.Config{NoOCISeccomp: true}, "UNSHARE=allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newRunsc(t, c.cfg)
			id := "inside-" + c.name
			dir := drivertest.BusyboxBundle(t, drivertest.Range(t, 9), drivertest.Shell(script), drivertest.Cgroups(id))
			var out, errb bytes.Buffer
			exit, err := runtime.Run(t.Context(), d, id, dir, runtime.IO{Stdout: &out, Stderr: &errb})
			if err != nil || exit.Code != 0 {
				t.Fatalf("run = %+v, %v\nstdout: %s\nstderr: %s", exit, err, out.String(), errb.String())
			}
			got := out.String()
			for _, f := range []string{"CapEff", "CapPrm", "CapBnd", "CapInh"} {
				if v := statusField(t, got, f); v != "0000000000000000" {
					t.Errorf("%s = %s, want none", f, v)
				}
			}
			for _, want := range []string{"ROOT=readonly", "TMP=writable", c.unshare, "MOUNT=blocked", "SELF=1 INIT=sh\n"} {
				if !strings.Contains(got, want) {
					t.Errorf("output lacks %q:\n%s", want, got)
				}
			}
		})
	}
}

// TestRunscHostLive proves the sandbox's hardening from the host: the
// processes runsc leaves running (the sentry, its ptrace stubs, the gofer),
// read from /proc/PID while the workload runs. What this runsc (2022-12,
// ptrace platform) does, asserted here:
//   - sentry and stubs run as the tenant's nobody (host uid HostUID+65534,
//     not the host's 65534 shared by every tenant) in their own user
//     namespace that maps only 65534 to it, so their capabilities there
//     (CAP_SYS_ADMIN, CAP_SYS_CHROOT) hold nothing on the host; they stay in
//     the host PID namespace (a ptrace platform need), under gVisor's own
//     seccomp filter (Seccomp 2) and no_new_privs;
//   - the gofer runs in a user namespace with the tenant's mapping, as the
//     tenant's base uid on the host, with a bounding set of CHOWN,
//     DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID and SYS_CHROOT (in that
//     namespace), seccomp 2 and no_new_privs;
//   - no process of the replica runs as host root;
//   - all of them are in the replica's cgroups, which carry the spec's CPU,
//     memory (no swap) and PIDs limits.
func TestRunscHostLive(t *testing.T) {
	d := newRunsc(t, runtime.Config{})
	r := drivertest.Range(t, 10)
	id := "hostlive"
	dir := drivertest.BusyboxBundle(t, r, drivertest.Shell("sleep 60"), drivertest.Cgroups(id), bundle.WithResources(250, 128<<20, 64))
	ctx := t.Context()
	drivertest.Started(t, d, id, dir)
	procs, err := d.HostProcesses(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]int{}
	hostUserNS, _ := os.Readlink("/proc/self/ns/user")
	tenant := fmt.Sprint(r.HostUID)
	for _, p := range procs {
		roles[p.Role]++
		status := readProc(t, p.Pid, "status")
		uidmap := strings.Fields(readProc(t, p.Pid, "uid_map"))
		userNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", p.Pid))
		t.Logf("%s pid %d: Uid %s CapEff %s CapBnd %s NoNewPrivs %s Seccomp %s uid_map %v",
			p.Role, p.Pid, statusField(t, status, "Uid"), statusField(t, status, "CapEff"),
			statusField(t, status, "CapBnd"), statusField(t, status, "NoNewPrivs"),
			statusField(t, status, "Seccomp"), uidmap)

		if uid := strings.Fields(statusField(t, status, "Uid")); slices0(uid) {
			t.Errorf("%s pid %d runs as host root: Uid %v", p.Role, p.Pid, uid)
		}
		if v := statusField(t, status, "NoNewPrivs"); v != "1" {
			t.Errorf("%s pid %d NoNewPrivs = %s", p.Role, p.Pid, v)
		}
		if v := statusField(t, status, "Seccomp"); v != "2" {
			t.Errorf("%s pid %d Seccomp = %s", p.Role, p.Pid, v)
		}
		if userNS == hostUserNS {
			t.Errorf("%s pid %d is in the host user namespace", p.Role, p.Pid)
		}
		var wantUID string
		var wantMap []string
		switch p.Role {
		case "sandbox", "stub":
			// The tenant's nobody: runsc runs as root of a user namespace
			// mapped to the tenant's range (issue 19), not host nobody.
			nobody := fmt.Sprint(r.HostUID + 65534)
			wantUID, wantMap = nobody, []string{"65534", nobody, "1"}
		case "gofer":
			wantUID, wantMap = tenant, []string{"0", tenant, fmt.Sprint(r.Size)}
			if v := statusField(t, status, "CapBnd"); v != "000000000004001f" {
				t.Errorf("gofer CapBnd = %s, want 000000000004001f", v)
			}
		}
		if v := statusField(t, status, "Uid"); v != strings.Repeat(wantUID+"\t", 3)+wantUID {
			t.Errorf("%s pid %d Uid = %q, want %s", p.Role, p.Pid, v, wantUID)
		}
		if !equal(uidmap, wantMap) {
			t.Errorf("%s pid %d uid_map = %v, want %v", p.Role, p.Pid, uidmap, wantMap)
		}
		if cg := readProc(t, p.Pid, "cgroup"); !strings.Contains(cg, ":memory:/rung-test/"+id+"\n") {
			t.Errorf("%s pid %d not in the replica's memory cgroup:\n%s", p.Role, p.Pid, cg)
		}
	}
	if roles["sandbox"] != 1 || roles["gofer"] != 1 || roles["stub"] < 1 {
		t.Errorf("host processes by role = %v, want 1 sandbox, 1 gofer, stubs", roles)
	}
	checkCgroup(t, id, 128<<20, 64, 25000)
}

func readProc(t *testing.T, pid int, file string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func slices0(ids []string) bool {
	for _, id := range ids {
		if id == "0" {
			return true
		}
	}
	return false
}

// TestRunscBareIDAdopted: a sandbox created before runtime IDs carried the
// driver's scope (plain `runsc create ID` in the driver's state
// directory) is still found, stopped and deleted by its replica ID, and
// a moved driver directory keeps its scope.
func TestRunscBareIDAdopted(t *testing.T) {
	dir := filepath.Join(drivertest.SearchableTempDir(t), "runsc")
	drivertest.RequireRoot(t)
	bin := drivertest.RequireBinary(t, "runsc")
	d, err := runtime.NewRunsc(runtime.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const id = "legacy-0"
	b := drivertest.BusyboxBundle(t, drivertest.Range(t, 2), drivertest.Shell("sleep 30"), drivertest.Cgroups(id))
	state := filepath.Join(dir, "state")
	for _, args := range [][]string{{"create", "--bundle", b, id}, {"start", id}} {
		// Output to a file: the sandbox keeps what it inherits open, so a
		// pipe would never close.
		out, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		// The hardening flags this runsc needs (as an older rung ran it).
		hf, err := runtime.RunscHardeningFlags(t.Context(), bin)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, append(append([]string{"--root", state, "--platform=ptrace", "--network=none"}, hf...), args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("runsc %v: %v\n%s", args, err, b)
		}
		out.Close()
	}
	t.Cleanup(func() { _ = exec.Command(bin, "--root", state, "delete", "--force", id).Run() })
	st, err := d.State(t.Context(), id)
	if err != nil || st.Status != runtime.Running || st.ID != id {
		t.Fatalf("state of the bare-ID sandbox: %+v, %v", st, err)
	}
	// Its processes were orphaned onto this test process (the subreaper),
	// as an old agent's are onto init: stop them and reap them here, as
	// init would, so that runsc sees them gone.
	procs, err := d.HostProcesses(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Kill(t.Context(), id, syscall.SIGKILL); err != nil {
		t.Fatalf("kill by replica ID: %v", err)
	}
	for _, p := range procs {
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		for range 100 {
			if wpid, _ := syscall.Wait4(p.Pid, nil, syscall.WNOHANG, nil); wpid == p.Pid || syscall.Kill(p.Pid, 0) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := d.Delete(t.Context(), id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := d.State(t.Context(), id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("after delete: %v, want ErrNotFound", err)
	}

	// The scope lives in the directory, not in its path.
	scope, err := os.ReadFile(filepath.Join(dir, "scope"))
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(filepath.Dir(dir), "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if _, err := runtime.NewRunsc(runtime.Config{Dir: moved}); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(moved, "scope")); string(again) != string(scope) {
		t.Errorf("scope %q after the move, was %q", again, scope)
	}
	if got := runtime.ContainerID(filepath.Join(moved, "state"), "x-0."+strings.TrimSpace(string(scope))); got != "x-0" {
		t.Errorf("ContainerID = %q, want x-0", got)
	}
}

// TestScopeConcurrentOpen: drivers opening one directory at once (three
// agents starting together) all get the same scope.
func TestScopeConcurrentOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runsc")
	scopes := make([]string, 8)
	var wg sync.WaitGroup
	for i := range scopes {
		wg.Go(func() {
			d, err := runtime.NewRunsc(runtime.Config{Dir: dir})
			if err != nil {
				t.Error(err)
				return
			}
			_ = d
			b, _ := os.ReadFile(filepath.Join(dir, "scope"))
			scopes[i] = string(b)
		})
	}
	wg.Wait()
	for _, s := range scopes {
		if s != scopes[0] || len(strings.TrimSpace(s)) != 8 {
			t.Fatalf("scopes %q, want one of 8 hex digits", scopes)
		}
	}
}
