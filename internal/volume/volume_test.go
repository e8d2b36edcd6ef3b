package volume_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
	"rung.dev/rung/internal/volume"
)

// node opens a Node with the volume attacher in a fresh data directory,
// with the project's busybox image; every volume is unmounted at the end.
func node(t *testing.T) (*replica.Node, *volume.Manager) {
	t.Helper()
	return openNode(t, microvm.Options{})
}

// openNode is node with the vm tier's options vm.
func openNode(t *testing.T, vm microvm.Options) (*replica.Node, *volume.Manager) {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "busybox")
	drivertest.RequireBinary(t, "mkfs.ext4")
	ctx := t.Context()
	dir := drivertest.SearchableTempDir(t)
	m, err := volume.Open(filepath.Join(dir, "volume"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.UnmountAll(); err != nil {
			t.Error(err)
		}
	})
	n, err := replica.Open(ctx, dir, replica.Options{Attachers: []replica.Attacher{volume.NewAttacher(m)}, VM: vm})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Images().Pack(ctx, root, "busybox:latest", image.PackOptions{}); err != nil {
		t.Fatal(err)
	}
	return n, m
}

func tiers(t *testing.T) []tenancy.Tier {
	var out []tenancy.Tier
	for _, tier := range []tenancy.Tier{tenancy.Container, tenancy.Sandbox} {
		bin := map[tenancy.Tier]string{tenancy.Container: "runc", tenancy.Sandbox: "runsc"}[tier]
		if _, err := os.Stat("/usr/sbin/" + bin); err == nil {
			out = append(out, tier)
		} else if _, err := os.Stat("/usr/bin/" + bin); err == nil {
			out = append(out, tier)
		} else {
			t.Logf("%s: %s not installed", tier, bin)
		}
	}
	return out
}

const mib = 1 << 20

func spec(tier tenancy.Tier, id, script string, vols ...replica.VolumeMount) replica.Spec {
	return replica.Spec{ID: id, Tenant: "lab", Tier: tier, Image: "busybox:latest",
		Args:      []string{"sh", "-c", script},
		Resources: topology.Resources{MilliCPU: 500, Memory: 128 * mib, PIDs: 64},
		Volumes:   vols}
}

// run runs a replica to its end and returns its exit code and output.
func run(t *testing.T, n *replica.Node, s replica.Spec) (int, string) {
	t.Helper()
	var out bytes.Buffer
	exit, err := n.Run(t.Context(), s, runtime.IO{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("%s: %v (output %q)", s.ID, err, out.String())
	}
	return exit.Code, out.String()
}

// TestVolumeOnRuntimes writes in one replica and reads back in the next,
// sees the size enforced as ENOSPC inside the replica, the files owned by
// the tenant's range from the host, nosuid,nodev on the host mount, and a
// deleted volume wiped: on runc and on runsc (through gVisor's gofer).
func TestVolumeOnRuntimes(t *testing.T) {
	for _, tier := range tiers(t) {
		t.Run(tier.String(), func(t *testing.T) {
			n, m := node(t)
			data := replica.VolumeMount{Name: "data", UID: "u1", MountPath: "/data", Size: 32 * mib}

			// Write, then a new replica reads it back.
			code, out := run(t, n, spec(tier, "lab-w-0", "echo kept > /data/f && sync && id -u", data))
			if code != 0 {
				t.Fatalf("write: exit %d: %s", code, out)
			}
			user, err := strconv.Atoi(strings.TrimSpace(out))
			if err != nil {
				t.Fatalf("id -u: %q", out)
			}
			code, out = run(t, n, spec(tier, "lab-r-0", "cat /data/f", data))
			if code != 0 || strings.TrimSpace(out) != "kept" {
				t.Fatalf("read back: exit %d, %q; want kept", code, out)
			}

			// Files are the tenant's mapped user's, as the host sees them.
			rng, err := n.TenantRange("lab")
			if err != nil {
				t.Fatal(err)
			}
			ref := volume.Ref{Tenant: "lab", Name: "data", UID: "u1"}
			mp, err := m.Mount(t.Context(), ref, data.Size, rng.HostUID, rng.HostGID)
			if err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(mp, "f"), &st); err != nil {
				t.Fatal(err)
			}
			if want := rng.HostUID + uint32(user); st.Uid != want || st.Uid < rng.HostUID || st.Uid >= rng.HostUID+rng.Size {
				t.Errorf("file owned by host uid %d, want the replica's user %d mapped into the tenant's range: %d", st.Uid, user, want)
			}
			if opts := mountOptions(t, mp); !strings.Contains(opts, "nosuid") || !strings.Contains(opts, "nodev") {
				t.Errorf("host mount options %q, want nosuid and nodev", opts)
			}
			if err := m.Unmount(ref); err != nil {
				t.Fatal(err)
			}

			// Past the size: ENOSPC inside the replica; below it, fine.
			code, out = run(t, n, spec(tier, "lab-full-0",
				"dd if=/dev/zero of=/data/small bs=1M count=4 2>&1 && echo SMALL-OK; dd if=/dev/zero of=/data/big bs=1M count=64 2>&1; echo rc=$?", data))
			if !strings.Contains(out, "SMALL-OK") || !strings.Contains(out, "No space left on device") || strings.Contains(out, "rc=0") {
				t.Errorf("writing past 32Mi: exit %d, output %q; want a 4M write to work and ENOSPC past the size", code, out)
			}

			// Same name, another uid (deleted and created again elsewhere):
			// refused until the old one is wiped.
			stale := data
			stale.UID = "u2"
			var out2 bytes.Buffer
			_, err = n.Run(t.Context(), spec(tier, "lab-stale-0", "ls /data", stale), runtime.IO{Stdout: &out2, Stderr: &out2})
			if !errors.Is(err, volume.ErrStale) {
				t.Errorf("mounting a stale volume: %v, want ErrStale", err)
			}
			if err := m.Delete(t.Context(), ref); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(m.MountPoint(ref), "f")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after delete: %v", err)
			}
			code, out = run(t, n, spec(tier, "lab-new-0", "ls -A /data | grep -v lost+found; echo end", stale))
			if code != 0 || strings.TrimSpace(out) != "end" {
				t.Errorf("the new volume of that name: exit %d, %q; want it empty", code, out)
			}
			infos, err := m.List()
			if err != nil || len(infos) != 1 || infos[0].Ref.UID != "u2" || infos[0].Mounted {
				t.Errorf("volumes after the runs: %+v, %v; want only u2, unmounted", infos, err)
			}
		})
	}
}

// TestVolumeOutlivesReplicaRestart keeps a replica running, kills it and
// starts it again: the data written before is there.
func TestVolumeOutlivesReplicaRestart(t *testing.T) {
	for _, tier := range tiers(t) {
		t.Run(tier.String(), func(t *testing.T) {
			n, m := node(t)
			ctx := t.Context()
			data := replica.VolumeMount{Name: "db", UID: "u1", MountPath: "/var/lib/db", Size: 32 * mib}
			s := spec(tier, "lab-db-0", "test -f /var/lib/db/n && cat /var/lib/db/n; echo $$ >> /var/lib/db/n; sleep 600", data)
			for i := range 2 {
				if err := n.Start(ctx, s); err != nil {
					t.Fatalf("start %d: %v", i, err)
				}
				t.Cleanup(func() { _ = n.Remove(context.WithoutCancel(ctx), s.ID) })
				// The run has written its line (seen from the host) before
				// it is killed.
				f := filepath.Join(m.MountPoint(volume.Ref{Tenant: "lab", Name: "db"}), "n")
				deadline := time.Now().Add(90 * time.Second)
				for {
					b, _ := os.ReadFile(f)
					if strings.Count(string(b), "\n") == i+1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("run %d: %q in the volume after 90s, want %d lines", i, b, i+1)
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err := n.Remove(ctx, s.ID); err != nil {
					t.Fatal(err)
				}
			}
			code, out := run(t, n, spec(tier, "lab-check-0", "wc -l < /var/lib/db/n", data))
			if code != 0 || strings.TrimSpace(out) != "2" {
				t.Errorf("lines written by two runs: %q (exit %d), want 2", out, code)
			}
		})
	}
}

func mountOptions(t *testing.T, mp string) string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == mp {
			return f[5]
		}
	}
	t.Fatalf("%s not mounted", mp)
	return ""
}
