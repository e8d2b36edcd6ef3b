package app_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/volume"
)

// appendRun is a replica's command: it appends "run N" to /data/log,
// N the lines it read there (so a later run proves it read the earlier
// ones from inside), then stays up.
const appendRun = `n=$(cat /data/log 2>/dev/null | wc -l); echo "run $n" >> /data/log; sync; exec sleep 3600`

// TestVolumesSurvive runs replicas with volumes under rung up on runc
// and runsc: their data survives kill -9 of the control plane and its
// agent, the workload's deletion and recreation; files are the tenant's
// mapped users' on the host; deleting the volume wipes it on the node.
func TestVolumesSurvive(t *testing.T) {
	drivertest.RequireRoot(t)
	for _, bin := range []string{"runc", "runsc", "busybox", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", bin, err)
		}
	}
	dir := filepath.Join(drivertest.SearchableTempDir(t), "data")
	var child *exec.Cmd
	start := func() *client.Client {
		t.Helper()
		var c *client.Client
		child, c = startCrashChild(t, dir, "RUNG_TEST_CRASH_AGENT=1")
		return c
	}
	kill := func() {
		_ = child.Process.Signal(syscall.SIGKILL)
		_, _ = child.Process.Wait()
	}
	vols, err := volume.Open(filepath.Join(dir, "volume"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if child != nil && child.ProcessState == nil {
			kill()
		}
		removeNodeReplicas(t, dir, vols) // volumedisk_test.go
	})
	ctx := t.Context()
	c := start()
	tiers := map[string]v1.Tier{"db": v1.TierContainer, "box": v1.TierSandbox}
	objs := []any{topologyObj(), tenantObj()}
	for name, tier := range tiers {
		objs = append(objs, volumeObj(name+"-data"), volumeWorkload(name, tier))
	}
	for _, o := range objs {
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	logOf := func(name string) string {
		return filepath.Join(vols.MountPoint(volume.Ref{Tenant: "acme", Name: name + "-data"}), "log")
	}
	for name := range tiers {
		waitLog(t, logOf(name), "run 0\n")
		// The tenant's mapped user owns the file, as the host sees it.
		var st unix.Stat_t
		if err := unix.Stat(logOf(name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid < 1<<16 {
			t.Errorf("%s: /data/log owned by host uid %d, not by a tenant's mapped range", name, st.Uid)
		}
	}

	// kill -9 of the control plane and its agent: the data stays, and the
	// replicas run on or start again reading it.
	kill()
	c = start()
	for name := range tiers {
		b, _ := os.ReadFile(logOf(name))
		if !strings.HasPrefix(string(b), "run 0\n") {
			t.Errorf("%s after kill -9: %q", name, b)
		}
	}

	// The workload deleted and applied again: the new replica reads what
	// the old one wrote.
	for name, tier := range tiers {
		if _, err := c.Delete(ctx, client.Ref{Kind: v1.KindWorkload, Tenant: "acme", Name: name}); err != nil {
			t.Fatal(err)
		}
		waitUnmounted(t, vols, name+"-data")
		if _, err := c.Apply(ctx, volumeWorkload(name, tier)); err != nil {
			t.Fatal(err)
		}
	}
	for name := range tiers {
		waitLog(t, logOf(name), "run 0\nrun 1\n")
	}

	// Deleting the volume: refused while mounted, then wiped by the node.
	if _, err := c.Delete(ctx, client.Ref{Kind: v1.KindVolume, Tenant: "acme", Name: "db-data"}); err == nil || !strings.Contains(err.Error(), "mounted by workload") {
		t.Errorf("delete a mounted volume: %v", err)
	}
	if _, err := c.Delete(ctx, client.Ref{Kind: v1.KindWorkload, Tenant: "acme", Name: "db"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, client.Ref{Kind: v1.KindVolume, Tenant: "acme", Name: "db-data"}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "volume", "images", "acme", "db-data.img")
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(img); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted volume's image is still on the node after 90s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "volume", "images", "acme", "box-data.img")); err != nil {
		t.Errorf("the other volume: %v", err)
	}
	kill()
}

func volumeObj(name string) *v1.Volume {
	return &v1.Volume{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindVolume},
		Metadata: v1.ObjectMeta{Name: name, Tenant: "acme"},
		Spec:     v1.VolumeSpec{Size: qty("32Mi")},
	}
}

func volumeWorkload(name string, tier v1.Tier) *v1.Workload {
	w := workloadObj(name, 1)
	w.Spec.Command = []string{"sh", "-c", appendRun}
	w.Spec.Resources.Memory = qty("64Mi")
	w.Spec.Isolation.Minimum = tier
	w.Spec.Volumes = []v1.VolumeMount{{Name: name + "-data", MountPath: "/data"}}
	return w
}

// waitLog waits until the file holds want.
func waitLog(t *testing.T, path, want string) {
	t.Helper()
	var b []byte
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		b, _ = os.ReadFile(path)
		if string(b) == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s holds %q after 120s, want %q", path, b, want)
}

// waitUnmounted waits until the node let go of volume name.
func waitUnmounted(t *testing.T, m *volume.Manager, name string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		infos, err := m.List()
		if err != nil {
			t.Fatal(err)
		}
		mounted := false
		for _, i := range infos {
			mounted = mounted || i.Ref.Name == name && i.Mounted
		}
		if !mounted {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("volume %s still mounted 90s after its workload was deleted", name)
}
