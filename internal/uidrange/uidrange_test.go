package uidrange

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestForTenant(t *testing.T) {
	for _, c := range []struct {
		index int
		want  Range
	}{
		{0, Range{HostUID: 1 << 20, HostGID: 1 << 20, Size: 65536}},
		{1, Range{HostUID: 1<<20 + 65536, HostGID: 1<<20 + 65536, Size: 65536}},
		{MaxTenants - 1, Range{HostUID: 1<<20 + uint32(MaxTenants-1)*65536, HostGID: 1<<20 + uint32(MaxTenants-1)*65536, Size: 65536}},
	} {
		got, err := ForTenant(c.index)
		if err != nil {
			t.Fatalf("ForTenant(%d): %v", c.index, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ForTenant(%d) (-want +got):\n%s", c.index, diff)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("ForTenant(%d) invalid: %v", c.index, err)
		}
	}
	for _, i := range []int{-1, MaxTenants, MaxTenants + 1} {
		if _, err := ForTenant(i); !errors.Is(err, ErrInvalid) {
			t.Errorf("ForTenant(%d) = %v, want ErrInvalid", i, err)
		}
	}
}

// TestNoOverlap: neighbouring and distant tenants never share an ID, no
// tenant range holds host root or nobody, and the probe range is apart.
func TestNoOverlap(t *testing.T) {
	indexes := []int{0, 1, 2, 3, 100, 4095, 4096, 30000, MaxTenants - 2, MaxTenants - 1}
	for _, i := range indexes {
		a, _ := ForTenant(i)
		for _, id := range []uint32{0, 65534, 100000} {
			if a.ContainsUID(id) {
				t.Errorf("tenant %d range %v holds host id %d", i, a, id)
			}
		}
		if a.Overlaps(Probe()) {
			t.Errorf("tenant %d overlaps the probe range", i)
		}
		for _, j := range indexes {
			b, _ := ForTenant(j)
			if i != j && a.Overlaps(b) {
				t.Errorf("tenants %d and %d overlap: %v %v", i, j, a, b)
			}
		}
	}
	if err := Probe().Validate(); err != nil {
		t.Errorf("probe range invalid: %v", err)
	}
	a, _ := ForTenant(5)
	if !a.Overlaps(a) || !a.Overlaps(Range{HostUID: a.HostUID + a.Size - 1, HostGID: 1 << 30, Size: 1}) {
		t.Error("Overlaps misses a shared id")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Range
	}{
		{"empty", Range{HostUID: 1 << 20, HostGID: 1 << 20}},
		{"host root", Range{HostUID: 0, HostGID: 1 << 20, Size: 10}},
		{"root gid", Range{HostUID: 1 << 20, HostGID: 0, Size: 10}},
		{"system ids", Range{HostUID: 1000, HostGID: 1000, Size: 65536}},
		{"wraps", Range{HostUID: 0xFFFFFF00, HostGID: 0xFFFFFF00, Size: 65536}},
		{"reaches -1", Range{HostUID: 0xFFFF0000, HostGID: 0xFFFF0000, Size: 65536}},
	} {
		if err := c.r.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate(%v) = %v, want ErrInvalid", c.name, c.r, err)
		}
	}
}

// TestShift re-owns a tree into a range: files, directories and symlinks
// themselves (lchown), never what a symlink points to, keeping setuid bits
// the unpacker left, refusing ids outside the range.
func TestShift(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown files to a tenant range")
	}
	r, _ := ForTenant(4)
	outside := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	mk := func(p string, uid, gid int) {
		if err := os.Lchown(filepath.Join(root, p), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "home/app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "home/app/data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mk("home/app", 1000, 1000)
	mk("home/app/data", 1000, 50)
	if err := os.WriteFile(filepath.Join(root, "suid"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "suid"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := Shift(root, r); err != nil {
		t.Fatal(err)
	}
	owner := func(p string) [2]uint32 {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return [2]uint32{st.Uid, st.Gid}
	}
	for p, want := range map[string][2]uint32{
		root:                                 {r.HostUID, r.HostGID},
		filepath.Join(root, "home/app"):      {r.HostUID + 1000, r.HostGID + 1000},
		filepath.Join(root, "home/app/data"): {r.HostUID + 1000, r.HostGID + 50},
		filepath.Join(root, "escape"):        {r.HostUID, r.HostGID},
		filepath.Join(root, "suid"):          {r.HostUID, r.HostGID},
		outside:                              {0, 0},
	} {
		if got := owner(p); got != want {
			t.Errorf("owner of %s = %v, want %v", p, got, want)
		}
	}
	if fi, _ := os.Stat(filepath.Join(root, "suid")); fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("setuid bit lost: %v", fi.Mode())
	}
	// Rerunning is harmless: owners already inside the range stay.
	if err := Shift(root, r); err != nil {
		t.Fatal(err)
	}
	if got := owner(filepath.Join(root, "home/app")); got != [2]uint32{r.HostUID + 1000, r.HostGID + 1000} {
		t.Errorf("second Shift moved home/app to %v", got)
	}
	// An owner outside the 16-bit container id space cannot be mapped.
	bad := t.TempDir()
	if err := os.Lchown(bad, 70000, 0); err != nil {
		t.Fatal(err)
	}
	if err := Shift(bad, r); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Shift of uid 70000 = %v, want ErrUnmapped", err)
	}
}
