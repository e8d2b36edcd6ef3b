package scan

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/vulndb"
)

// fixtureDB is a vulnerability database with testdata/osv imported.
func fixtureDB(t testing.TB) *vulndb.DB {
	t.Helper()
	db, err := vulndb.Open(t.Context(), filepath.Join(t.TempDir(), "vulndb.db"), vulndb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Import(t.Context(), "testdata/osv", time.Now()); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestMatchDebian matches the real dpkg status slice against the OSV
// fixtures: libssl3 and openssl (source openssl) are below the fix of
// DSA-9001-1 and above that of DSA-9002-1; zlib1g (source zlib) is the
// last affected version of DEBIAN-CVE-2025-9003; login and passwd (source
// shadow) are older than the range of DEBIAN-CVE-2025-9004.
func TestMatchDebian(t *testing.T) {
	pkgs, err := ParseDpkgStatus(open(t, "dpkg-status"), "Debian:12")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Match(t.Context(), fixtureDB(t), pkgs)
	if err != nil {
		t.Fatal(err)
	}
	crit := policy.SeverityCritical
	want := []policy.Vulnerability{
		{ID: "DSA-9001-1", Aliases: []string{"CVE-2025-9001"}, Package: "libssl3", Version: "3.0.19-1~deb12u2", FixedIn: "3.0.19-1~deb12u3", Severity: crit, Summary: "openssl - security update"},
		{ID: "DSA-9001-1", Aliases: []string{"CVE-2025-9001"}, Package: "openssl", Version: "3.0.19-1~deb12u2", FixedIn: "3.0.19-1~deb12u3", Severity: crit, Summary: "openssl - security update"},
		{ID: "DEBIAN-CVE-2025-9003", Package: "zlib1g", Version: "1:1.2.13.dfsg-1", Severity: policy.SeverityLow, Summary: "zlib: inflate may read past the end of the window."},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vulnerabilities (-want +got):\n%s", diff)
	}
}

func TestMatchAlpine(t *testing.T) {
	pkgs, err := ParseApkInstalled(open(t, "apk-installed"), "Alpine:v3.20")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Match(t.Context(), fixtureDB(t), pkgs)
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Vulnerability{{ID: "ALPINE-CVE-2025-9005", Package: "libcrypto3", Version: "3.3.0-r2", FixedIn: "3.3.2-r0", Severity: policy.SeverityMedium, Summary: "openssl in alpine"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vulnerabilities (-want +got):\n%s", diff)
	}
}

// TestAffects walks the OSV range semantics.
func TestAffects(t *testing.T) {
	cmpDeb, _ := Versions("Debian:12")
	rng := func(evs ...vulndb.Event) vulndb.Advisory {
		return vulndb.Advisory{Ranges: []vulndb.Range{{Type: "ECOSYSTEM", Events: evs}}}
	}
	in := func(v string) vulndb.Event { return vulndb.Event{Introduced: v} }
	fx := func(v string) vulndb.Event { return vulndb.Event{Fixed: v} }
	tests := []struct {
		name  string
		adv   vulndb.Advisory
		v     string
		hit   bool
		fixed string
	}{
		{"open range", rng(in("0")), "1.0-1", true, ""},
		{"below fix", rng(in("0"), fx("1.2-1")), "1.1-1", true, "1.2-1"},
		{"at fix", rng(in("0"), fx("1.2-1")), "1.2-1", false, ""},
		{"tilde before fix", rng(in("0"), fx("1.2-1")), "1.2-1~deb12u1", true, "1.2-1"},
		{"before introduced", rng(in("2.0"), fx("2.3")), "1.9", false, ""},
		{"second of two ranges", rng(in("0"), fx("1.2"), in("2.0"), fx("2.3")), "2.1", true, "2.3"},
		{"between ranges", rng(in("0"), fx("1.2"), in("2.0"), fx("2.3")), "1.5", false, ""},
		{"unsorted events", rng(fx("2.3"), in("2.0")), "2.2", true, "2.3"},
		{"last affected", vulndb.Advisory{Ranges: []vulndb.Range{{Events: []vulndb.Event{in("0"), {LastAffected: "1.5"}}}}}, "1.5", true, ""},
		{"after last affected", vulndb.Advisory{Ranges: []vulndb.Range{{Events: []vulndb.Event{in("0"), {LastAffected: "1.5"}}}}}, "1.5.1", false, ""},
		{"limit", vulndb.Advisory{Ranges: []vulndb.Range{{Events: []vulndb.Event{in("0"), {Limit: "3"}}}}}, "3", false, ""},
		{"epoch", rng(in("0"), fx("1:1.0")), "9.9", true, "1:1.0"},
		{"listed version", vulndb.Advisory{Versions: []string{"1.0-1"}}, "1.0-1", true, ""},
		{"unparsable version", rng(in("0")), "not a version!", false, ""},
	}
	for _, tc := range tests {
		hit, fixed := Affects(cmpDeb, tc.adv, tc.v)
		if hit != tc.hit || fixed != tc.fixed {
			t.Errorf("%s: Affects(%s) = %v, %q; want %v, %q", tc.name, tc.v, hit, fixed, tc.hit, tc.fixed)
		}
	}
}
