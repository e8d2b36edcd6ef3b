package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rung.dev/rung/internal/store"
)

// fill makes a store in a new directory with n keys whose values contain
// marker, closes it, and returns the directory and the database path.
func fill(t *testing.T, n int, marker string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		k := fmt.Sprintf("/tenants/acme/workloads/w%04d", i)
		if _, err := s.Put(t.Context(), k, []byte(fmt.Sprintf("%s-%04d-%s", marker, i, strings.Repeat("x", 200))), store.Any); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, filepath.Join(dir, DBFile)
}

// flipAll flips one bit in every occurrence of needle in the file.
func flipAll(t *testing.T, path, needle string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(needle))
		if j < 0 {
			break
		}
		b[i+j+len(needle)/2] ^= 0x10
		i += j + len(needle)
		n++
	}
	if n == 0 {
		t.Fatalf("%q not found in %s", needle, path)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// readStore returns a store file's bytes and its first meta page.
func readStore(t *testing.T, path string) ([]byte, boltMeta) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := readMeta(b)
	if !ok {
		t.Fatal("meta page 0 invalid in a fresh file")
	}
	return b, m
}

// openBytes makes b the store file in dir and opens it.
func openBytes(t *testing.T, dir string, b []byte) (*Store, string, error) {
	t.Helper()
	p := filepath.Join(dir, DBFile)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	return s, p, err
}

func wantCorrupt(t *testing.T, what string, err error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("%s: error %v, want ErrCorrupt", what, err)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%s: error %q does not mention %q", what, err, m)
		}
	}
}

// TestBitFlipInValue: a flipped bit in a stored value fails Open's check
// (naming the file and the key) and, with the check skipped, fails every
// read of that key, while other keys still read fine.
func TestBitFlipInValue(t *testing.T) {
	dir, path := fill(t, 20, "payload")
	flipAll(t, path, "payload-0007-")

	_, err := Open(dir, Options{})
	wantCorrupt(t, "Open", err, path, "/tenants/acme/workloads/w0007")

	s, err := Open(dir, Options{SkipCheck: true})
	if err != nil {
		t.Fatalf("Open with SkipCheck: %v", err)
	}
	defer s.Close()
	_, err = s.Get(t.Context(), "/tenants/acme/workloads/w0007")
	wantCorrupt(t, "Get of the damaged key", err, "/tenants/acme/workloads/w0007")
	if v, err := s.Get(t.Context(), "/tenants/acme/workloads/w0008"); err != nil || !bytes.HasPrefix(v.Data, []byte("payload-0008-")) {
		t.Fatalf("Get of an intact key = %q, %v", v.Data, err)
	}
	_, _, err = s.List(t.Context(), "/tenants/acme")
	wantCorrupt(t, "List over the damaged key", err)
	_, err = s.Put(t.Context(), "/tenants/acme/workloads/w0007", []byte("new"), store.Any)
	wantCorrupt(t, "overwriting the damaged key", err)
	wantCorrupt(t, "Check", s.Check(t.Context()), path)
}

// TestBitFlipInKey: a value moved under another key (here: the key's
// bytes damaged) fails its checksum too.
func TestBitFlipInKey(t *testing.T) {
	dir, path := fill(t, 5, "v")
	flipAll(t, path, "workloads/w0003")
	_, err := Open(dir, Options{})
	wantCorrupt(t, "Open", err, path)
}

// TestTruncated: a file cut anywhere below the size its meta page records
// is refused at Open with an error naming it, and never treated as a new,
// empty store.
func TestTruncated(t *testing.T) {
	_, path := fill(t, 300, "v")
	orig, m := readStore(t, path)
	used := int(m.pgid) * int(m.pageSize)
	for _, size := range []int{0, 1, 100, int(m.pageSize), 2 * int(m.pageSize), used / 2, used - int(m.pageSize), used - 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			s, p, err := openBytes(t, t.TempDir(), orig[:size])
			if err == nil {
				s.Close()
				t.Fatalf("Open of a file truncated to %d of %d bytes succeeded", size, used)
			}
			wantCorrupt(t, "Open", err, p)
			if fi, _ := os.Stat(p); fi.Size() != int64(size) {
				t.Fatalf("Open changed the damaged file: %d bytes, was %d", fi.Size(), size)
			}
		})
	}
	// Cutting only the preallocated tail loses nothing.
	s, _, err := openBytes(t, t.TempDir(), orig[:used])
	if err != nil {
		t.Fatalf("Open of the used part: %v", err)
	}
	defer s.Close()
	if vals, _, err := s.List(t.Context(), "/"); err != nil || len(vals) != 300 {
		t.Fatalf("List = %d values, %v; want 300", len(vals), err)
	}
}

// TestDamagedMeta: both meta pages damaged is refused; one is survivable
// (bbolt falls back to the other, as after a torn commit).
func TestDamagedMeta(t *testing.T) {
	_, path := fill(t, 3, "v")
	orig, m := readStore(t, path)
	ps := int(m.pageSize)
	for _, tc := range []struct {
		name    string
		offsets []int
		ok      bool
	}{
		{"meta0", []int{pageHeaderSize + 20}, true},
		{"meta1", []int{ps + pageHeaderSize + 20}, true},
		{"both", []int{pageHeaderSize + 20, ps + pageHeaderSize + 20}, false},
		{"magic", []int{pageHeaderSize, ps + pageHeaderSize}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			for _, o := range tc.offsets {
				b[o] ^= 0x01
			}
			s, p, err := openBytes(t, t.TempDir(), b)
			if tc.ok {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			wantCorrupt(t, "Open", err, p)
		})
	}
}

// TestNotAStore: garbage and foreign bbolt files are refused.
func TestNotAStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, DBFile), bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{})
	wantCorrupt(t, "Open of garbage", err, DBFile)
}

// TestDamageSweep damages a small store at many places, one at a time,
// and asserts that Open either refuses it as corrupt or opens a store
// whose every read is either the value written or ErrCorrupt: damage is
// never served as data and never crashes the process.
func TestDamageSweep(t *testing.T) {
	_, path := fill(t, 40, "sweep")
	orig, m := readStore(t, path)
	used := int(m.pgid) * int(m.pageSize)
	refused, opened := 0, 0
	dir := t.TempDir()
	for off := 2 * int(m.pageSize); off < used; off += 97 {
		b := bytes.Clone(orig)
		b[off] ^= byte(1 << (off % 8))
		s, _, err := openBytes(t, dir, b)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("offset %d: Open: %v, want ErrCorrupt", off, err)
			}
			refused++
			continue
		}
		opened++
		for i := range 40 {
			k := fmt.Sprintf("/tenants/acme/workloads/w%04d", i)
			v, err := s.Get(t.Context(), k)
			if err != nil && !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("offset %d: Get(%s): %v", off, k, err)
			}
			if err == nil && !bytes.HasPrefix(v.Data, fmt.Appendf(nil, "sweep-%04d-", i)) {
				t.Fatalf("offset %d: Get(%s) served damaged data %q", off, k, v.Data)
			}
		}
		s.Close()
	}
	t.Logf("%d damaged files refused, %d opened with intact reads", refused, opened)
}
