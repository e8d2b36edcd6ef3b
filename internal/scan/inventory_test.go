package scan

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/golden"
	"rung.dev/rung/internal/policy"
)

func open(t testing.TB, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestOSRelease(t *testing.T) {
	tests := []struct {
		file string
		want Distro
		eco  string
	}{
		{"os-release-debian12", Distro{ID: "debian", VersionID: "12", Codename: "bookworm", Pretty: "Debian GNU/Linux 12 (bookworm)"}, "Debian:12"},
		{"os-release-alpine", Distro{ID: "alpine", VersionID: "3.20.3", Pretty: "Alpine Linux v3.20"}, "Alpine:v3.20"},
	}
	for _, tc := range tests {
		got, err := ParseOSRelease(open(t, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.file, diff)
		}
		if e := got.Ecosystem(); e != tc.eco {
			t.Errorf("%s: Ecosystem() = %q, want %q", tc.file, e, tc.eco)
		}
	}
	for _, tc := range []struct {
		d   Distro
		eco string
	}{
		{Distro{ID: "ubuntu", VersionID: "22.04"}, "Ubuntu:22.04"},
		{Distro{ID: "almalinux", VersionID: "9.4"}, "AlmaLinux:9"},
		{Distro{ID: "rocky", VersionID: "8.10"}, "Rocky Linux:8"},
		{Distro{ID: "azurelinux", VersionID: "3.0"}, "Azure Linux:3"},
		{Distro{ID: "mariner", VersionID: "2.0"}, "Mariner:2.0"},
		{Distro{ID: "rhel", VersionID: "9.4"}, "Red Hat"},
		{Distro{ID: "debian"}, "Debian"},
		{Distro{ID: "gentoo"}, ""},
	} {
		if got := tc.d.Ecosystem(); got != tc.eco {
			t.Errorf("%+v.Ecosystem() = %q, want %q", tc.d, got, tc.eco)
		}
	}
}

// TestDpkgStatus reads a slice of a real Debian 12 /var/lib/dpkg/status.
func TestDpkgStatus(t *testing.T) {
	pkgs, err := ParseDpkgStatus(open(t, "dpkg-status"), "Debian:12")
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 36 {
		t.Errorf("%d packages, want 36", len(pkgs))
	}
	find := func(name string) policy.Package {
		i := slices.IndexFunc(pkgs, func(p policy.Package) bool { return p.Name == name })
		if i < 0 {
			t.Fatalf("package %s not found", name)
		}
		return pkgs[i]
	}
	for _, want := range []policy.Package{
		{Name: "libssl3", Version: "3.0.19-1~deb12u2", Source: "openssl", SourceVersion: "3.0.19-1~deb12u2", Ecosystem: "Debian:12", DB: DBDpkg},
		{Name: "login", Version: "1:4.13+dfsg1-1+deb12u1", Source: "shadow", SourceVersion: "1:4.13+dfsg1-1+deb12u1", Ecosystem: "Debian:12", DB: DBDpkg},
		{Name: "openssl", Version: "3.0.19-1~deb12u2", Source: "openssl", SourceVersion: "3.0.19-1~deb12u2", Ecosystem: "Debian:12", DB: DBDpkg},
	} {
		if diff := cmp.Diff(want, find(want.Name)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", want.Name, diff)
		}
	}
	var lines []string
	for _, p := range pkgs {
		lines = append(lines, strings.Join([]string{p.Name, p.Version, p.Source, p.SourceVersion}, " "))
	}
	golden.Check(t, filepath.Join("testdata", "dpkg-status.golden"), []byte(strings.Join(lines, "\n")+"\n"))
}

// TestDpkgStatusFull reads this project's copy of a whole Debian 12 status
// file: every stanza is installed and parsed.
func TestDpkgStatusFull(t *testing.T) {
	pkgs := fullDebian(t)
	if len(pkgs) != 744 {
		t.Errorf("%d packages, want 744", len(pkgs))
	}
	for _, p := range pkgs {
		if p.Name == "" || p.Version == "" || p.Source == "" || p.SourceVersion == "" {
			t.Errorf("incomplete package %+v", p)
		}
		if _, err := Compare(p.Ecosystem, p.Version, p.SourceVersion); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
}

func fullDebian(t testing.TB) []policy.Package {
	t.Helper()
	pkgs, err := DebianPackages()
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestDpkgStatusSkipsRemoved(t *testing.T) {
	in := "Package: a\nStatus: deinstall ok config-files\nVersion: 1\n\n" +
		"Package: b\nStatus: install ok installed\nVersion: 2\nSource: bsrc (2+b1)\nDescription: x\n long\n .\n text\n\n" +
		"Package: c\nVersion: 3\n" // status.d stanza: no Status
	pkgs, err := ParseDpkgStatus(strings.NewReader(in), "Debian:12")
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Package{
		{Name: "b", Version: "2", Source: "bsrc", SourceVersion: "2+b1", Ecosystem: "Debian:12", DB: DBDpkg},
		{Name: "c", Version: "3", Source: "c", SourceVersion: "3", Ecosystem: "Debian:12", DB: DBDpkg},
	}
	if diff := cmp.Diff(want, pkgs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestApkInstalled(t *testing.T) {
	pkgs, err := ParseApkInstalled(open(t, "apk-installed"), "Alpine:v3.20")
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Package{
		{Name: "musl", Version: "1.2.5-r0", Source: "musl", SourceVersion: "1.2.5-r0", Ecosystem: "Alpine:v3.20", DB: DBApk},
		{Name: "libcrypto3", Version: "3.3.0-r2", Source: "openssl", SourceVersion: "3.3.0-r2", Ecosystem: "Alpine:v3.20", DB: DBApk},
		{Name: "busybox", Version: "1.36.1-r28", Source: "busybox", SourceVersion: "1.36.1-r28", Ecosystem: "Alpine:v3.20", DB: DBApk},
	}
	if diff := cmp.Diff(want, pkgs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRPMManifest(t *testing.T) {
	pkgs, err := ParseRPMManifest(open(t, "rpm-manifest"), "Azure Linux:3")
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Package{
		{Name: "filesystem", Version: "3.1-1.azl3", Source: "filesystem", SourceVersion: "3.1-1.azl3", Ecosystem: "Azure Linux:3", DB: DBRPM},
		{Name: "openssl-libs", Version: "1:3.3.0-2.azl3", Source: "openssl", SourceVersion: "1:3.3.0-2.azl3", Ecosystem: "Azure Linux:3", DB: DBRPM},
	}
	if diff := cmp.Diff(want, pkgs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseRPMManifest(strings.NewReader("only-a-name\n"), ""); err == nil {
		t.Error("malformed line accepted")
	}
}
