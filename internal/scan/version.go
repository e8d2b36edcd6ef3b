package scan

import (
	"errors"
	"fmt"
	"strings"

	apkver "github.com/knqyf263/go-apk-version"
	debver "github.com/knqyf263/go-deb-version"
	rpmver "github.com/knqyf263/go-rpm-version"
)

// ErrVersion is wrapped by Compare for a version the ecosystem's rules
// cannot parse, and for an ecosystem without known rules.
var ErrVersion = errors.New("cannot compare versions")

// Comparer compares two versions of one ecosystem: negative when a < b,
// zero when equal, positive when a > b.
type Comparer func(a, b string) (int, error)

// Versions is the comparison rule of each ecosystem family (the part of
// an OSV ecosystem before ':'). The implementations are the ones Trivy
// uses, all pure Go and without cgo:
//   - Debian, Ubuntu: dpkg's rules (epoch, upstream, revision; '~' sorts
//     before everything), github.com/knqyf263/go-deb-version
//   - Alpine: apk-tools' rules (suffixes _alpha < _beta < _pre < _rc <
//     release < _cvs < _svn < _git < _hg < _p, -rN revisions),
//     github.com/knqyf263/go-apk-version
//   - Red Hat and RPM derivatives: rpmvercmp with epoch and '~'/'^',
//     github.com/knqyf263/go-rpm-version
func Versions(ecosystem string) (Comparer, bool) {
	family, _, _ := strings.Cut(ecosystem, ":")
	switch family {
	case "Debian", "Ubuntu":
		return compareDeb, true
	case "Alpine":
		return compareApk, true
	case "Red Hat", "AlmaLinux", "Rocky Linux", "Azure Linux", "Mariner", "openSUSE", "SUSE", "Photon OS":
		return compareRPM, true
	}
	return nil, false
}

// Compare compares a and b by the rules of ecosystem.
func Compare(ecosystem, a, b string) (int, error) {
	cmp, ok := Versions(ecosystem)
	if !ok {
		return 0, fmt.Errorf("%w: no version rules for ecosystem %q", ErrVersion, ecosystem)
	}
	return cmp(a, b)
}

func compareDeb(a, b string) (int, error) {
	va, err := debver.NewVersion(a)
	if err != nil {
		return 0, fmt.Errorf("%w: debian version %q: %v", ErrVersion, a, err)
	}
	vb, err := debver.NewVersion(b)
	if err != nil {
		return 0, fmt.Errorf("%w: debian version %q: %v", ErrVersion, b, err)
	}
	return va.Compare(vb), nil
}

func compareApk(a, b string) (int, error) {
	// go-apk-version orders "1.0_rc1" after "1.0" when neither has a
	// revision (apk-tools orders it before); with the implied "-r0" that
	// apk-tools assumes, it agrees with apk-tools.
	a, b = withRevision(a), withRevision(b)
	va, err := apkver.NewVersion(a)
	if err != nil {
		return 0, fmt.Errorf("%w: alpine version %q: %v", ErrVersion, a, err)
	}
	vb, err := apkver.NewVersion(b)
	if err != nil {
		return 0, fmt.Errorf("%w: alpine version %q: %v", ErrVersion, b, err)
	}
	return va.Compare(vb), nil
}

func compareRPM(a, b string) (int, error) {
	if a == "" || b == "" {
		return 0, fmt.Errorf("%w: empty rpm version", ErrVersion)
	}
	return rpmver.NewVersion(a).Compare(rpmver.NewVersion(b)), nil
}

// withRevision appends apk's implied "-r0" to a version without a revision.
func withRevision(v string) string {
	if v == "" || strings.Contains(v, "-r") {
		return v
	}
	return v + "-r0"
}

// cachingVersions is Versions with parsed versions kept for the life of
// the Comparer, for one scan: the same installed and fixed versions are
// compared many times, and parsing dominates a comparison.
func cachingVersions(ecosystem string) (Comparer, bool) {
	family, _, _ := strings.Cut(ecosystem, ":")
	switch family {
	case "Debian", "Ubuntu":
		return cachedDeb(), true
	}
	return Versions(ecosystem)
}

func cachedDeb() Comparer {
	type result struct {
		v   debver.Version
		err error
	}
	cache := map[string]result{}
	parse := func(s string) (debver.Version, error) {
		r, ok := cache[s]
		if !ok {
			r.v, r.err = debver.NewVersion(s)
			if r.err != nil {
				r.err = fmt.Errorf("%w: debian version %q: %v", ErrVersion, s, r.err)
			}
			cache[s] = r
		}
		return r.v, r.err
	}
	return func(a, b string) (int, error) {
		va, err := parse(a)
		if err != nil {
			return 0, err
		}
		vb, err := parse(b)
		if err != nil {
			return 0, err
		}
		return va.Compare(vb), nil
	}
}
