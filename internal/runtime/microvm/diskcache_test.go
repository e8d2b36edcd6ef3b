package microvm

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/runtime/drivertest"
)

// diskTree is a small root readable by the tenant's root (mkfs runs as it).
func diskTree(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/hostname", filepath.Join(root, "bin/link")); err != nil {
		t.Fatal(err)
	}
	return root
}

var diskLinux = &specs.Linux{
	UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 3_000_000, Size: 65536}},
	GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 3_000_000, Size: 65536}},
}

// TestRootKey: the key follows the bytes, modes, links, owner and id
// mappings of the root, and nothing else.
func TestRootKey(t *testing.T) {
	dir := t.TempDir()
	root := diskTree(t, dir)
	base, err := rootKey(root, diskLinux, 3_065_534, 3_065_534)
	if err != nil {
		t.Fatal(err)
	}
	same, err := rootKey(root, diskLinux, 3_065_534, 3_065_534)
	if err != nil || same != base {
		t.Fatalf("same tree: %s vs %s (%v)", same, base, err)
	}
	other := &specs.Linux{UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 4_000_000, Size: 65536}}, GIDMappings: diskLinux.GIDMappings}
	changes := map[string]func() (string, error){
		"owner":    func() (string, error) { return rootKey(root, diskLinux, 3_000_000, 3_065_534) },
		"mappings": func() (string, error) { return rootKey(root, other, 3_065_534, 3_065_534) },
		"content": func() (string, error) {
			if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("two\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return rootKey(root, diskLinux, 3_065_534, 3_065_534)
		},
		"mode": func() (string, error) {
			if err := os.Chmod(filepath.Join(root, "etc/hostname"), 0o4755); err != nil {
				t.Fatal(err)
			}
			return rootKey(root, diskLinux, 3_065_534, 3_065_534)
		},
		"link": func() (string, error) {
			os.Remove(filepath.Join(root, "bin/link"))
			if err := os.Symlink("/etc/shadow", filepath.Join(root, "bin/link")); err != nil {
				t.Fatal(err)
			}
			return rootKey(root, diskLinux, 3_065_534, 3_065_534)
		},
	}
	seen := map[string]string{base: "base"}
	for _, name := range []string{"owner", "mappings", "content", "mode", "link"} {
		k, err := changes[name]()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if prev, ok := seen[k]; ok {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[k] = name
	}
}

// TestRootDiskShared: one disk per root, made once, owned by the VMM's
// user, read-only; another root gets another disk; idle disks beyond
// diskKeep are removed, used ones stay.
func TestRootDiskShared(t *testing.T) {
	drivertest.RequireRoot(t)
	dir := drivertest.SearchableTempDir(t)
	root := diskTree(t, dir)
	d := &Driver{opt: Options{Dir: filepath.Join(dir, "vm"), MaxDiskMiB: 64}, vms: map[string]*vm{}}
	if err := os.MkdirAll(filepath.Join(d.opt.Dir, "vms"), 0o711); err != nil {
		t.Fatal(err)
	}
	const uid = 3_065_534
	first, err := d.rootDisk(t.Context(), root, diskLinux, uid, uid)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != uid || fi.Mode().Perm() != 0o400 || fi.Size() == 0 {
		t.Errorf("disk %s: uid %d gid %d mode %v size %d, want %d:%d 0400 and content", first, st.Uid, st.Gid, fi.Mode(), fi.Size(), uid, uid)
	}
	again, err := d.rootDisk(t.Context(), root, diskLinux, uid, uid)
	if err != nil {
		t.Fatal(err)
	}
	fi2, err := os.Stat(again)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || fi2.Sys().(*syscall.Stat_t).Ino != st.Ino {
		t.Errorf("second replica of the same root got %s (inode %d), want the shared %s (inode %d)", again, fi2.Sys().(*syscall.Stat_t).Ino, first, st.Ino)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := d.rootDisk(t.Context(), root, diskLinux, uid, uid)
	if err != nil {
		t.Fatal(err)
	}
	if changed == first {
		t.Fatalf("a changed root booted the old disk %s", first)
	}
	// Pruning: the used disk stays, the idle ones beyond diskKeep go.
	d.vms["used"] = &vm{disk: first}
	for i := range diskKeep + 3 {
		p := filepath.Join(d.diskDir(), "root-idle"+string(rune('a'+i))+".img")
		if err := os.WriteFile(p, nil, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	d.pruneDisks()
	ents, err := os.ReadDir(d.diskDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first); err != nil {
		t.Errorf("the used disk was pruned: %v", err)
	}
	if len(ents) != diskKeep+1 {
		t.Errorf("%d disks after pruning, want %d idle + 1 used", len(ents), diskKeep)
	}
}
