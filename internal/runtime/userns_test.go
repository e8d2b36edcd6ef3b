package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

// holders returns the PIDs of the user namespace holders of sandbox id.
func holders(id string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(b), "rung-userns:"+id+"\x00") {
			out = append(out, pid)
		}
	}
	return out
}

// waitGone polls until cond holds, for up to a minute (a hang, not a
// timing assertion).
func waitGone(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s still there after a minute", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunscAdoptedInUserNS: a sandbox run in its tenant's user namespace
// is managed by a driver opened again on the same directory (an agent
// restart): state, exec, kill and delete run in the namespace kept by its
// holder; after delete the holder, the state and the cgroup are gone.
// Then the same with the holder killed meanwhile: its state is read as
// host root, exec is refused (runsc would act on tenant-writable state as
// host root), and the sandbox is stopped and deleted through its cgroup;
// nothing is left.
func TestRunscAdoptedInUserNS(t *testing.T) {
	for _, holderKilled := range []bool{false, true} {
		t.Run(fmt.Sprintf("holderKilled=%v", holderKilled), func(t *testing.T) {
			dir := filepath.Join(drivertest.SearchableTempDir(t), "runsc")
			drivertest.RequireRoot(t)
			drivertest.RequireBinary(t, "runsc")
			d1, err := runtime.NewRunsc(runtime.Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("adopt-ns-%v", holderKilled)
			r := drivertest.Range(t, 11)
			b := drivertest.BusyboxBundle(t, r, drivertest.Shell("sleep 300"), drivertest.Cgroups(id), bundle.WithResources(250, 128<<20, 64))
			drivertest.Started(t, d1, id, b)
			st, err := d1.State(t.Context(), id)
			if err != nil || st.Status != runtime.Running {
				t.Fatalf("state %+v, %v", st, err)
			}
			if st.Bundle != b {
				t.Errorf("state's bundle %q, want the replica's own %q", st.Bundle, b)
			}
			hs := holders(id)
			if len(hs) != 1 {
				t.Fatalf("holders of %s: %v, want one", id, hs)
			}
			if holderKilled {
				_ = syscall.Kill(hs[0], syscall.SIGKILL)
				waitGone(t, "the holder", func() bool { return len(holders(id)) == 0 })
			}

			d2, err := runtime.NewRunsc(runtime.Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			if st2, err := d2.State(ctx, id); err != nil || st2.Pid != st.Pid || st2.Status != runtime.Running {
				t.Fatalf("adopted state %+v, %v; want running pid %d", st2, err, st.Pid)
			}
			var out bytes.Buffer
			code, err := d2.Exec(ctx, id, []string{"echo", "adopted"}, runtime.ExecIO{Stdout: &out})
			if holderKilled {
				// Without its holder runsc can't run as the tenant's root,
				// and its state is the tenant's to write: refused.
				if !errors.Is(err, runtime.ErrUserNS) || out.Len() != 0 {
					t.Fatalf("exec without the holder: %d, %v, %q; want refused (ErrUserNS)", code, err, out.String())
				}
			} else if err != nil || code != 0 || out.String() != "adopted\n" {
				t.Fatalf("exec through the adopting driver: %d, %v, %q", code, err, out.String())
			}
			if err := d2.Kill(ctx, id, syscall.SIGKILL); err != nil {
				t.Fatalf("kill: %v", err)
			}
			if _, err := d2.Wait(ctx, id); !errors.Is(err, runtime.ErrExitUnknown) {
				t.Fatalf("wait: %v, want ErrExitUnknown", err)
			}
			if err := d2.Delete(ctx, id); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := d2.State(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
				t.Errorf("state after delete: %v, want ErrNotFound", err)
			}
			waitGone(t, "the holder", func() bool { return len(holders(id)) == 0 })
			if _, err := os.Stat(filepath.Join(dir, "sandboxes", id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the sandbox's state directory is left: %v", err)
			}
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory/rung-test", id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the sandbox's cgroup is left: %v", err)
			}
		})
	}
}

// TestRunscRefusesWithoutIdentity: a sandbox whose spec gives no tenant
// range or no cgroup of its own is refused (ErrUserNS), nothing of it is
// left, and it never runs under the host's nobody. Control: the same
// bundle with both runs.
func TestRunscRefusesWithoutIdentity(t *testing.T) {
	d := newRunsc(t, runtime.Config{})
	r := drivertest.Range(t, 12)
	for _, c := range []struct {
		name string
		edit func(dir string)
	}{
		{"no uid mapping", func(dir string) {
			editSpec(t, dir, func(l map[string]any) { delete(l, "uidMappings"); delete(l, "gidMappings") })
		}},
		{"no cgroups path", func(dir string) {
			editSpec(t, dir, func(l map[string]any) { delete(l, "cgroupsPath") })
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "refuse-" + strings.ReplaceAll(c.name, " ", "-")
			dir := drivertest.BusyboxBundle(t, r, drivertest.Shell("echo ran"), drivertest.Cgroups(id))
			c.edit(dir)
			var out bytes.Buffer
			_, err := runtime.Run(t.Context(), d, id, dir, runtime.IO{Stdout: &out})
			if !errors.Is(err, runtime.ErrUserNS) {
				t.Fatalf("run: %v (output %q), want ErrUserNS", err, out.String())
			}
			if out.Len() != 0 {
				t.Errorf("the refused sandbox ran: %q", out.String())
			}
			if err := d.Create(t.Context(), id, dir, runtime.IO{}); !errors.Is(err, runtime.ErrUserNS) {
				_ = d.Delete(t.Context(), id)
				t.Fatalf("create: %v, want ErrUserNS", err)
			}
			if hs := holders(id); len(hs) != 0 {
				t.Errorf("holders left: %v", hs)
			}
			if _, err := d.State(t.Context(), id); !errors.Is(err, runtime.ErrNotFound) {
				t.Errorf("state of the refused sandbox: %v, want ErrNotFound", err)
			}
		})
	}
	// Control: the same bundle, untouched, runs.
	id := "refuse-control"
	dir := drivertest.BusyboxBundle(t, r, drivertest.Shell("echo ran"), drivertest.Cgroups(id))
	var out bytes.Buffer
	if exit, err := runtime.Run(t.Context(), d, id, dir, runtime.IO{Stdout: &out}); err != nil || exit.Code != 0 || out.String() != "ran\n" {
		t.Fatalf("control run: %+v, %v, %q", exit, err, out.String())
	}
	if hs := holders(id); len(hs) != 0 {
		t.Errorf("holders left after the control run: %v", hs)
	}
}

// editSpec edits the "linux" object of a bundle's config.json.
func editSpec(t *testing.T, dir string, edit func(linux map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	edit(spec["linux"].(map[string]any))
	if raw, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOthersCanExec: a runsc that the tenant's root could not run (a
// private directory on the way, no o+x) is caught before anything starts.
func TestOthersCanExec(t *testing.T) {
	open := drivertest.SearchableTempDir(t)
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(dir, name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		path string
		ok   bool
	}{
		{write(open, "ok", 0o755), true},
		{write(open, "owner-only", 0o700), false},
		{write(private, "hidden", 0o755), false},
	} {
		if err := runtime.OthersCanExec(c.path); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.path, err, c.ok)
		}
	}
}

// TestRunscStateUntrusted: a sandbox's runsc state is written from its
// tenant's user namespace (its gofer runs as that namespace's root), so a
// pid it names that is not in the cgroup the driver made is refused.
// Control: the untouched state is accepted.
func TestRunscStateUntrusted(t *testing.T) {
	dir := filepath.Join(drivertest.SearchableTempDir(t), "runsc")
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runsc")
	d, err := runtime.NewRunsc(runtime.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const id = "untrusted-state"
	b := drivertest.BusyboxBundle(t, drivertest.Range(t, 14), drivertest.Shell("sleep 300"), drivertest.Cgroups(id))
	drivertest.Started(t, d, id, b)
	if _, err := d.State(t.Context(), id); err != nil {
		t.Fatalf("control: state of the untouched sandbox: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "sandboxes", id, "state", "*.state"))
	if len(files) != 1 {
		t.Fatalf("state files %v, want one", files)
	}
	orig, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(files[0], orig, 0o640) })
	var st map[string]any
	if err := json.Unmarshal(orig, &st); err != nil {
		t.Fatal(err)
	}
	sb, ok := st["sandbox"].(map[string]any)
	if !ok {
		t.Fatalf("no sandbox in runsc's state (%d bytes)", len(orig))
	}
	// A live process that runsc, in the tenant's namespace, sees as alive
	// (it may signal it) but outside the sandbox's cgroup: one started in
	// the holder's user namespace as its root, from this test's cgroup.
	hs := holders(id)
	if len(hs) != 1 {
		t.Fatalf("holders %v, want one", hs)
	}
	other := exec.Command("nsenter", "-t", strconv.Itoa(hs[0]), "-U", "-S", "0", "-G", "0", "--", "sleep", "300")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	sb["pid"] = other.Process.Pid
	forged, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], forged, 0o640); err != nil {
		t.Fatal(err)
	}
	if got, err := d.State(t.Context(), id); !errors.Is(err, runtime.ErrUserNS) {
		t.Fatalf("state naming pid %d: %+v, %v; want ErrUserNS", other.Process.Pid, got, err)
	}
	if err := os.WriteFile(files[0], orig, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := d.State(t.Context(), id); err != nil {
		t.Fatalf("state restored: %v", err)
	}
}
