package volume_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/volume"
)

// vmNode is node with the vm tier (TCG allowed: tests only) besides runc.
func vmNode(t *testing.T) (*replica.Node, *volume.Manager) {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireQEMU(t, microvm.DefaultBinary)
	bin, err := drivertest.BuildVMInit(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n, m := openNode(t, microvm.Options{AllowEmulated: true, Init: bin})
	a := n.VM().Detect(t.Context())
	drivertest.RequireVMTier(t, a.Available, a.Reason)
	return n, m
}

// TestVolumeOnVM boots two vm replicas (real QEMU, TCG) on one volume: the
// first writes, the second reads it back and hits ENOSPC at the volume's
// size; inside the guest the files are the replica's user's and the
// mount is nosuid,nodev; from the host the files are the tenant's mapped
// user's (the container tier's ids); a container replica then reads the
// same volume and writes to it. A volume mounted on the host is refused
// to a vm replica (two kernels on one file system) and the other way
// round.
func TestVolumeOnVM(t *testing.T) {
	n, m := vmNode(t)
	data := replica.VolumeMount{Name: "data", UID: "u1", MountPath: "/data", Size: 32 * mib}
	ref := volume.Ref{Tenant: "lab", Name: "data", UID: "u1"}
	vm := func(id, script string) replica.Spec { return spec(tenancy.VM, id, script, data) }

	// Write in one guest.
	code, out := run(t, n, vm("lab-vmw-0", "echo kept > /data/f && sync && id -u && stat -c '%u %g' /data /data/f && grep ' /data ' /proc/mounts"))
	if code != 0 {
		t.Fatalf("vm write: exit %d: %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("vm write: output %q", out)
	}
	user := lines[0]
	if lines[1] != user+" "+user || lines[2] != user+" "+user {
		t.Errorf("in the guest /data and /data/f are owned by %q, %q; want the replica's user %s", lines[1], lines[2], user)
	}
	if mo := lines[3]; !strings.Contains(mo, "nosuid") || !strings.Contains(mo, "nodev") || !strings.Contains(mo, "rw") {
		t.Errorf("guest mount of /data: %q, want rw,nosuid,nodev", mo)
	}
	// While a vm replica holds it, the host never mounts it.
	infos, err := m.List()
	if err != nil || len(infos) != 1 || infos[0].Mounted {
		t.Errorf("volumes after the vm run: %+v, %v; want one, not mounted on the host", infos, err)
	}

	// Read back in a new guest, and the size holds.
	code, out = run(t, n, vm("lab-vmr-0", "cat /data/f; dd if=/dev/zero of=/data/small bs=1M count=4 2>&1 && echo SMALL-OK; dd if=/dev/zero of=/data/big bs=1M count=64 2>&1; echo rc=$?; rm -f /data/small /data/big; sync"))
	if !strings.HasPrefix(out, "kept\n") || !strings.Contains(out, "SMALL-OK") || !strings.Contains(out, "No space left on device") || strings.Contains(out, "rc=0") {
		t.Errorf("vm read back and write past 32Mi: exit %d, output %q; want kept, a 4M write to work and ENOSPC past the size", code, out)
	}

	// The host sees the tenant's range: the ids a container replica has.
	rng, err := n.TenantRange("lab")
	if err != nil {
		t.Fatal(err)
	}
	mp, err := m.Mount(t.Context(), ref, data.Size, rng.HostUID, rng.HostGID)
	if err != nil {
		t.Fatalf("host mount after the guests (e2fsck first): %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(mp, "f"), &st); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint(st.Uid - rng.HostUID); st.Uid < rng.HostUID || st.Uid >= rng.HostUID+rng.Size || want != user {
		t.Errorf("the guest's file is host uid %d; want the replica's user %s in the tenant's range from %d", st.Uid, user, rng.HostUID)
	}
	// Mounted on the host (as a container replica has it): refused to a
	// vm replica, before anything boots.
	var out2 bytes.Buffer
	if _, err := n.Run(t.Context(), vm("lab-vmx-0", "true"), runtime.IO{Stdout: &out2, Stderr: &out2}); !errors.Is(err, volume.ErrInUse) {
		t.Errorf("a vm replica on a volume mounted on the host: %v, want ErrInUse", err)
	}
	if err := m.Unmount(ref); err != nil {
		t.Fatal(err)
	}

	// The container tier on the same volume.
	if _, err := exec.LookPath("runc"); err != nil {
		t.Logf("runc not installed: the container half is skipped")
		return
	}
	code, out = run(t, n, spec(tenancy.Container, "lab-c-0", "cat /data/f && echo more >> /data/f && cat /data/f", data))
	if code != 0 || out != "kept\nkept\nmore\n" {
		t.Errorf("container on the vm's volume: exit %d, %q", code, out)
	}
}

// TestVolumeVMExclusive (no boot): a volume a vm replica holds is refused
// to a container replica and the other way round, and allowed once the
// holder lets go; an image a guest wrote is checked with e2fsck before
// the host mounts it: a clean one mounts, a broken one is refused.
func TestVolumeVMExclusive(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "mkfs.ext4")
	drivertest.RequireBinary(t, "e2fsck")
	ctx := t.Context()
	m, err := volume.Open(filepath.Join(t.TempDir(), "volume"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.UnmountAll() })
	a := volume.NewAttacher(m)
	data := replica.VolumeMount{Name: "data", UID: "u1", MountPath: "/data", Size: 32 * mib}
	at := func(tier tenancy.Tier, id string) *replica.Attachment {
		return &replica.Attachment{Spec: spec(tier, id, "true", data), UID: 200000, GID: 200000}
	}
	vm := at(tenancy.VM, "lab-vm-0")
	if err := a.Attach(ctx, vm); err != nil {
		t.Fatal(err)
	}
	s := &specs.Spec{}
	for _, o := range vm.Opts {
		if err := o(s); err != nil {
			t.Fatal(err)
		}
	}
	disks, err := bundle.VMDisks(s)
	if err != nil || len(disks) != 1 || disks[0].Path != "/data" || len(s.Mounts) != 0 {
		t.Fatalf("vm replica's spec: disks %+v (%v), mounts %+v; want one disk at /data and no host mount", disks, err, s.Mounts)
	}
	if infos, _ := m.List(); len(infos) != 1 || infos[0].Mounted {
		t.Errorf("volumes: %+v; want one, not mounted on the host", infos)
	}
	// Held by the vm replica: refused to a container replica and to
	// another vm replica.
	if err := a.Attach(ctx, at(tenancy.Container, "lab-c-0")); !errors.Is(err, volume.ErrInUse) {
		t.Errorf("container replica on a vm's volume: %v, want ErrInUse", err)
	}
	if err := a.Attach(ctx, at(tenancy.VM, "lab-vm-1")); !errors.Is(err, volume.ErrInUse) {
		t.Errorf("second vm replica on a vm's volume: %v, want ErrInUse", err)
	}
	// Let go: the container replica gets it (e2fsck'd, mounted).
	if err := a.Detach(ctx, "lab-vm-0", nil); err != nil {
		t.Fatal(err)
	}
	c := at(tenancy.Container, "lab-c-0")
	if err := a.Attach(ctx, c); err != nil {
		t.Fatalf("container replica after the vm let go: %v", err)
	}
	// Mounted on the host for the container: refused to a vm replica.
	if err := a.Attach(ctx, at(tenancy.VM, "lab-vm-2")); !errors.Is(err, volume.ErrInUse) {
		t.Errorf("vm replica on a volume a container uses: %v, want ErrInUse", err)
	}
	if err := a.Detach(ctx, "lab-c-0", nil); err != nil {
		t.Fatal(err)
	}
	// A guest leaves a broken file system (here: its superblock zeroed;
	// 32 MiB has no backup): the host refuses to mount it.
	if err := a.Attach(ctx, at(tenancy.VM, "lab-vm-3")); err != nil {
		t.Fatal(err)
	}
	if err := a.Detach(ctx, "lab-vm-3", nil); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disks[0].Image, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := a.Attach(ctx, at(tenancy.Container, "lab-c-1")); !errors.Is(err, volume.ErrInvalid) || !strings.Contains(err.Error(), "e2fsck") {
		t.Errorf("container replica on a broken guest-written volume: %v, want ErrInvalid (e2fsck)", err)
	}
	if infos, _ := m.List(); len(infos) != 1 || infos[0].Mounted {
		t.Errorf("volumes: %+v; want the broken one not mounted", infos)
	}
}
