package scan

import (
	"errors"
	"testing"
)

// TestCompare checks each ecosystem's rules with the examples its own
// documentation gives.
func TestCompare(t *testing.T) {
	tests := []struct {
		eco, a, b string
		want      int
	}{
		// Debian Policy §5.6.12 "Version": the epoch wins, then upstream,
		// then revision; '~' sorts before everything, even the end of the
		// part: "~~, ~~a, ~, the empty part, a".
		{"Debian:12", "1.0~~", "1.0~~a", -1},
		{"Debian:12", "1.0~~a", "1.0~", -1},
		{"Debian:12", "1.0~", "1.0", -1},
		{"Debian:12", "1.0", "1.0a", -1},
		{"Debian:12", "1:1.0", "2.0", 1},
		{"Debian:12", "1.0-1", "1.0-1+b1", -1},
		{"Debian:12", "3.0.19-1~deb12u2", "3.0.19-1", -1},
		{"Debian:12", "2.38.1-5+deb12u3", "2.38.1-5+deb12u10", -1},
		{"Debian:12", "1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1", 0},
		{"Debian:12", "1.2.10", "1.2.9", 1},
		{"Ubuntu:22.04", "1.0ubuntu1", "1.0ubuntu1.1", -1},
		// apk-tools version.c / `apk version -t`: suffix order _alpha <
		// _beta < _pre < _rc < (none) < _cvs < _svn < _git < _hg < _p,
		// a letter after the number is later, -rN is the package revision.
		{"Alpine:v3.20", "1.0_alpha", "1.0_beta", -1},
		{"Alpine:v3.20", "1.0_beta", "1.0_pre", -1},
		{"Alpine:v3.20", "1.0_pre", "1.0_rc", -1},
		{"Alpine:v3.20", "1.0_rc1", "1.0", -1},
		{"Alpine:v3.20", "1.0", "1.0_p1", -1},
		{"Alpine:v3.20", "1.0_rc1", "1.0_rc2", -1},
		{"Alpine:v3.20", "1.0", "1.0a", -1},
		{"Alpine:v3.20", "1.2.3-r0", "1.2.3-r1", -1},
		{"Alpine:v3.20", "1.2.10-r0", "1.2.9-r5", 1},
		{"Alpine:v3.20", "3.3.2-r0", "3.3.2-r0", 0},
		// rpm's own rpmvercmp test suite (tests/rpmvercmp.at).
		{"Red Hat", "1.0", "1.0", 0},
		{"Red Hat", "1.0", "2.0", -1},
		{"Red Hat", "2.0", "2.0.1", -1},
		{"Red Hat", "2.0.1a", "2.0.1", 1},
		{"Red Hat", "5.5p1", "5.5p2", -1},
		{"Red Hat", "5.5p10", "5.5p1", 1},
		{"Red Hat", "10xyz", "10.1xyz", -1},
		{"Red Hat", "xyz.4", "8", -1},
		{"Red Hat", "1.0~rc1", "1.0", -1},
		{"Red Hat", "1.0~rc1", "1.0~rc2", -1},
		{"Red Hat", "1.0^", "1.0", 1},
		{"Red Hat", "1.0^git1", "1.01", -1},
		{"Red Hat", "1.0~rc1^git1", "1.0~rc1", 1},
		{"AlmaLinux:9", "1:1.0-1.el9", "2.0-1.el9", 1},
		{"AlmaLinux:9", "3.0.7-25.el9_3", "3.0.7-27.el9", -1},
	}
	for _, tc := range tests {
		got, err := Compare(tc.eco, tc.a, tc.b)
		if err != nil {
			t.Errorf("Compare(%s, %q, %q): %v", tc.eco, tc.a, tc.b, err)
			continue
		}
		if sign(got) != tc.want {
			t.Errorf("Compare(%s, %q, %q) = %d, want %d", tc.eco, tc.a, tc.b, got, tc.want)
		}
		if back, _ := Compare(tc.eco, tc.b, tc.a); sign(back) != -tc.want {
			t.Errorf("Compare(%s, %q, %q) = %d, not antisymmetric", tc.eco, tc.b, tc.a, back)
		}
	}
}

func TestCompareErrors(t *testing.T) {
	for _, tc := range []struct{ eco, a, b string }{
		{"npm", "1", "2"},
		{"Debian:12", "", "1"},
		{"Debian:12", "1.0 beta", "1"},
		{"Alpine:v3.20", "not a version!", "1"},
		{"Red Hat", "", "1"},
	} {
		if _, err := Compare(tc.eco, tc.a, tc.b); !errors.Is(err, ErrVersion) {
			t.Errorf("Compare(%s, %q, %q) err = %v, want ErrVersion", tc.eco, tc.a, tc.b, err)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
