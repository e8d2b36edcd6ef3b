package vulndb

import (
	"archive/zip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// fixtures is the scan package's OSV fixtures.
const fixtures = "../scan/testdata/osv"

func openDB(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vulndb.db")
	db, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func advIDs(as []Advisory) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func TestImportDirAndLookup(t *testing.T) {
	db, _ := openDB(t)
	st, err := db.Import(t.Context(), fixtures, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := ImportStats{Read: 8, Added: 6, Withdrawn: 1, Skipped: 1}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	got, err := db.Advisories(t.Context(), "Debian:12", "openssl")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"DSA-9001-1", "DSA-9002-1"}, advIDs(got)); diff != "" {
		t.Errorf("openssl advisories (-want +got):\n%s", diff)
	}
	wantAdv := Advisory{
		ID: "DSA-9001-1", Aliases: []string{"CVE-2025-9001"}, Summary: "openssl - security update", Severity: "critical",
		Ranges: []Range{{Type: "ECOSYSTEM", Events: []Event{{Introduced: "0"}, {Fixed: "3.0.19-1~deb12u3"}}}},
	}
	if diff := cmp.Diff(wantAdv, got[0]); diff != "" {
		t.Errorf("DSA-9001-1 (-want +got):\n%s", diff)
	}
	zlib, _ := db.Advisories(t.Context(), "Debian:12", "zlib")
	if len(zlib) != 1 || zlib[0].Severity != "low" || zlib[0].Summary != "zlib: inflate may read past the end of the window." {
		t.Errorf("zlib advisories %+v", zlib)
	}
	// No prefix confusion between "openssl" and "openssl-libs" or ecosystems.
	for _, k := range [][2]string{{"Debian:12", "openss"}, {"Debian:1", "zlib"}, {"Debian:12", "bash"}, {"Go", "example.com/m"}} {
		if got, _ := db.Advisories(t.Context(), k[0], k[1]); len(got) != 0 {
			t.Errorf("Advisories(%s, %s) = %v, want none", k[0], k[1], advIDs(got))
		}
	}
	s, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Vulnerabilities != 6 || s.Advisories != 7 || !s.Updated.Equal(t0) {
		t.Errorf("stats %+v", s)
	}
}

func TestReimportReplacesAndWithdraws(t *testing.T) {
	db, _ := openDB(t)
	if _, err := db.Import(t.Context(), fixtures, t0); err != nil {
		t.Fatal(err)
	}
	// The same records again change nothing.
	st, err := db.Import(t.Context(), fixtures, t0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Added != 0 || st.Unchanged != 6 {
		t.Errorf("re-import stats %+v", st)
	}
	// A newer DSA-9001-1 that moved to another package replaces the old one.
	e, err := ParseEntry([]byte(`{"id":"DSA-9001-1","modified":"2025-06-01T00:00:00Z",
		"affected":[{"package":{"ecosystem":"Debian:12","name":"openssl-provider"},"versions":["1"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := ParseEntry([]byte(`{"id":"DSA-9002-1","modified":"2025-06-01T00:00:00Z","withdrawn":"2025-06-01T00:00:00Z"}`))
	if _, err := db.Put(t.Context(), []*Entry{e, w}, t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.Advisories(t.Context(), "Debian:12", "openssl"); len(got) != 0 {
		t.Errorf("openssl still has %v", advIDs(got))
	}
	if got, _ := db.Advisories(t.Context(), "Debian:12", "openssl-provider"); !slices.Equal(advIDs(got), []string{"DSA-9001-1"}) {
		t.Errorf("openssl-provider has %v", advIDs(got))
	}
}

func TestImportZip(t *testing.T) {
	zpath := filepath.Join(t.TempDir(), "all.zip")
	f, err := os.Create(zpath)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	entries, _ := os.ReadDir(fixtures)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(fixtures, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := zw.Create(e.Name())
		w.Write(data)
	}
	zw.Create("README") // not JSON: ignored
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	db, _ := openDB(t)
	st, err := db.Import(t.Context(), zpath, t0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read != 8 || st.Added != 6 {
		t.Errorf("zip import stats %+v", st)
	}
}

func TestImportInvalidIsAtomic(t *testing.T) {
	db, _ := openDB(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"id":"A-1","modified":"2025-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"a"},"versions":["1"]}]}`), 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"id":"B-1","affected":[{"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0","fixed":"1"}]}]}]}`), 0o644)
	_, err := db.Import(t.Context(), dir, t0)
	if !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("err = %v, want ErrInvalidEntry", err)
	}
	if got, _ := db.Advisories(t.Context(), "Debian:12", "a"); len(got) != 0 {
		t.Error("a failed import stored records")
	}
	for _, bad := range []string{`{`, `{"modified":"2025-01-01T00:00:00Z"}`} {
		if _, err := ParseEntry([]byte(bad)); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("ParseEntry(%s) err = %v", bad, err)
		}
	}
}

func TestOpenReadOnly(t *testing.T) {
	_, err := Open(t.Context(), filepath.Join(t.TempDir(), "none.db"), Options{ReadOnly: true})
	if !errors.Is(err, ErrNoDatabase) {
		t.Errorf("err = %v, want ErrNoDatabase", err)
	}
	db, path := openDB(t)
	if _, err := db.Import(t.Context(), fixtures, t0); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ro, err := Open(t.Context(), path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got, _ := ro.Advisories(t.Context(), "Alpine:v3.20", "openssl"); len(got) != 1 || got[0].Severity != "medium" {
		t.Errorf("read-only lookup %+v", got)
	}
}
