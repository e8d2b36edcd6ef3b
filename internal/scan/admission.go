package scan

import (
	"bytes"
	"compress/gzip"
	"embed"
	"io"
	"slices"

	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/vulndb"
	"rung.dev/rung/internal/vulndb/vulndbtest"
)

// Setup of the admission benchmark, shared by BenchmarkAdmission* and
// `rung bench admission`.

//go:embed testdata/dpkg-status-full.gz testdata/os-release-debian12
var admissionData embed.FS

// AdmissionEcosystem is the ecosystem of the admission benchmark's image
// and database.
const AdmissionEcosystem = "Debian:12"

// DebianStatus returns the dpkg status file of a real Debian 12 image
// (744 packages; testdata/dpkg-status-full.gz, embedded).
func DebianStatus() ([]byte, error) {
	f, err := admissionData.Open("testdata/dpkg-status-full.gz")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// DebianOSRelease returns the /etc/os-release of Debian 12 (embedded).
func DebianOSRelease() []byte {
	b, _ := admissionData.ReadFile("testdata/os-release-debian12")
	return b
}

// DebianPackages returns the packages of DebianStatus.
func DebianPackages() ([]policy.Package, error) {
	b, err := DebianStatus()
	if err != nil {
		return nil, err
	}
	return ParseDpkgStatus(bytes.NewReader(b), AdmissionEcosystem)
}

// AdmissionEntries generates the admission benchmark's database for pkgs:
// n OSV records of which 5% name one of pkgs' source packages (about a
// dozen each for a full Debian image), the rest packages the image does not
// have. Deterministic.
func AdmissionEntries(n int, pkgs []policy.Package) []*vulndb.Entry {
	var names []string
	for _, p := range pkgs {
		names = append(names, p.Source)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return vulndbtest.Generate(n, AdmissionEcosystem, names, 0.05, 1)
}

// Linear is the straightforward baseline of the admission benchmark: no
// index, every record checked against every package.
type Linear []*vulndb.Entry

// Match scans every record for every package, as a first implementation
// would, with the same version rules as Match. Its result may hold
// duplicates and is unsorted; compare with VulnKeys.
func (l Linear) Match(pkgs []policy.Package) []policy.Vulnerability {
	var out []policy.Vulnerability
	for _, p := range pkgs {
		cmp, ok := Versions(p.Ecosystem)
		if !ok {
			continue
		}
		for _, e := range l {
			for _, a := range e.Affected {
				if a.Package.Ecosystem != p.Ecosystem || (a.Package.Name != p.Source && a.Package.Name != p.Name) {
					continue
				}
				ver := p.SourceVersion
				if a.Package.Name != p.Source {
					ver = p.Version
				}
				adv := vulndb.Advisory{ID: e.ID, Ranges: a.Ranges, Versions: a.Versions}
				if hit, fixed := Affects(cmp, adv, ver); hit {
					out = append(out, policy.Vulnerability{ID: e.ID, Package: p.Name, Version: p.Version, FixedIn: fixed})
				}
			}
		}
	}
	return out
}

// VulnKeys returns vs as sorted, unique "package id fixed" strings, to
// compare the findings of Match and Linear.Match.
func VulnKeys(vs []policy.Vulnerability) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Package + " " + v.ID + " " + v.FixedIn
	}
	slices.Sort(out)
	return slices.Compact(out)
}
