package store_test

import (
	"errors"
	"strings"
	"testing"

	"rung.dev/rung/internal/store"
)

func TestDirPrefix(t *testing.T) {
	for _, tc := range []struct{ dir, want string }{
		{"/", "/"},
		{"/tenants", "/tenants/"},
		{"/tenants/acme/", "/tenants/acme/"},
		{"", ""}, {"//", ""}, {"/tenants//", ""}, {"tenants", ""}, {"/a/../b", ""},
	} {
		got, err := store.DirPrefix(tc.dir)
		if tc.want == "" {
			if !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("DirPrefix(%q) = %q, %v; want ErrInvalidKey", tc.dir, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("DirPrefix(%q) = %q, %v; want %q", tc.dir, got, err, tc.want)
		}
	}
}

func TestCheckPrecondition(t *testing.T) {
	put := func(e int64) store.Op { return store.PutOp("/k", nil, e) }
	del := func(e int64) store.Op { return store.DeleteOp("/k", e) }
	for _, tc := range []struct {
		op   store.Op
		rev  int64 // current revision; 0 = absent
		want error
	}{
		{put(store.Any), 0, nil},
		{put(store.Any), 5, nil},
		{put(store.Create), 0, nil},
		{put(store.Create), 5, store.ErrExists},
		{put(5), 5, nil},
		{put(5), 6, store.ErrConflict},
		{put(5), 0, store.ErrConflict},
		{del(store.Any), 5, nil},
		{del(store.Any), 0, store.ErrNotFound},
		{del(5), 5, nil},
		{del(5), 0, store.ErrConflict},
		{store.CheckOp("/k", store.Create), 0, nil},
		{store.CheckOp("/k", store.Create), 3, store.ErrExists},
		{store.CheckOp("/k", 3), 3, nil},
		{store.CheckOp("/k", 3), 4, store.ErrConflict},
	} {
		err := store.CheckPrecondition(2, tc.op, tc.rev)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s expect %d at rev %d: %v, want %v", tc.op.Kind, tc.op.Expect, tc.rev, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), `txn op 2 (`) {
			t.Errorf("error %q does not name the operation", err)
		}
	}
}

// FuzzValidateKey: whatever is accepted is a clean path, and List's
// prefix for it can never match a sibling that merely shares its start.
func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"/a", "/tenants/acme/workloads/api", "/a/../b", "//", "/a\x00", "/" + strings.Repeat("x", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if store.ValidateKey(key) != nil {
			return
		}
		if len(key) > store.MaxKeySize || !strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") ||
			strings.Contains(key, "//") || strings.Contains(key+"/", "/../") || strings.Contains(key+"/", "/./") {
			t.Fatalf("accepted %q", key)
		}
		for _, c := range []byte(key) {
			if c < 0x21 || c > 0x7e || c == '%' || c == '\\' {
				t.Fatalf("accepted %q with byte %#x", key, c)
			}
		}
		p, err := store.DirPrefix(key)
		if err != nil || p != key+"/" {
			t.Fatalf("DirPrefix(%q) = %q, %v", key, p, err)
		}
	})
}
