package volume_test

import (
	"os"
	"path/filepath"
	"testing"

	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/volume"
)

// TestDisk: the room for volumes is the file system's, and an image holds
// only the blocks written to it (sparse), which Held counts.
func TestDisk(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "mkfs.ext4")
	ctx := t.Context()
	m, err := volume.Open(filepath.Join(t.TempDir(), "volume"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.UnmountAll(); err != nil {
			t.Error(err)
		}
	})
	empty, err := m.Disk()
	if err != nil {
		t.Fatal(err)
	}
	if empty.Capacity <= 0 || empty.Free <= 0 || empty.Free > empty.Capacity || empty.Held != 0 {
		t.Fatalf("empty directory: %+v; want capacity ≥ free > 0 and nothing held", empty)
	}
	r := volume.Ref{Tenant: "acme", Name: "pg", UID: "u1"}
	const size = 64 << 20
	mp, err := m.Mount(ctx, r, size, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	made, err := m.Disk()
	if err != nil {
		t.Fatal(err)
	}
	if made.Held <= 0 || made.Held >= size/2 {
		t.Fatalf("after mkfs: held %d; want some of the image's %d bytes, far from all (sparse)", made.Held, size)
	}
	// 16 MiB written and synced inside: the image holds that much more.
	f, err := os.Create(filepath.Join(mp, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 16<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := m.Unmount(r); err != nil { // flushes the loop device to the image
		t.Fatal(err)
	}
	written, err := m.Disk()
	if err != nil {
		t.Fatal(err)
	}
	if grown := written.Held - made.Held; grown < 15<<20 || written.Held > size {
		t.Errorf("after writing 16MiB: held %d (grew %d); want it grown by about 16MiB, at most the size", written.Held, grown)
	}
}
