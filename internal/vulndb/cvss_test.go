package vulndb

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Every expected score below is a published value, not the output of this
// code:
//   - CVSS v2: NVD's base scores (CVE-2014-0160 Heartbleed 5.0; CVE-2014-6271
//     Shellshock 10.0; CVE-2002-2421 7.8; CVE-2002-0440 7.5), NVD v2
//     calculator values recorded in RedHatProductSecurity/cvss
//     tests/vectors_calculator2, and polycvss's documented example (6.8),
//     which that crate checks against NVD's calculators.
//   - CVSS v3: the CVSS v3.1 specification's examples and NVD (9.8, 10.0,
//     5.9, 7.8, 6.1, 6.4, 1.6, 0; Heartbleed 7.5).
//   - CVSS v4: FIRST's calculator (9.3), RedHatProductSecurity/cvss
//     tests/vectors_simple4, vectors_threat4 and vectors_supplemental4 (7.3
//     as CVSS-B, 4.1 once E:U is applied, unchanged by supplemental metrics;
//     2.1), and polycvss's documented example (5.2).
var cvssReference = []struct {
	name   string
	typ    string
	vector string
	want   float64
}{
	{"v2 CVE-2014-0160 Heartbleed", "CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:N/A:N", 5.0},
	{"v2 CVE-2014-6271 Shellshock", "CVSS_V2", "AV:N/AC:L/Au:N/C:C/I:C/A:C", 10.0},
	{"v2 CVE-2002-2421", "CVSS_V2", "AV:N/AC:L/Au:N/C:N/I:N/A:C", 7.8},
	{"v2 CVE-2002-0440", "CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5},
	{"v2 NVD calculator", "CVSS_V2", "AV:A/AC:M/Au:S/C:N/I:N/A:P", 2.3},
	{"v2 polycvss example", "CVSS_V2", "AV:A/AC:H/Au:N/C:C/I:C/A:C", 6.8},
	// Temporal and environmental metrics change the temporal and
	// environmental scores (4.9; 2.3 and 2.8 in NVD's calculator), not the
	// base score.
	{"v2 temporal ignored", "CVSS_V2", "AV:A/AC:M/Au:N/C:C/I:N/A:P/E:POC/RL:W/RC:UC", 6.4},
	{"v2 environmental ignored", "CVSS_V2", "AV:A/AC:H/Au:S/C:N/I:P/A:P/E:POC/RL:OF/RC:C/CDP:LM/TD:M/CR:M/IR:L/AR:L", 2.9},

	{"v3.1 critical", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8},
	{"v3.1 scope changed", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0},
	{"v3.1 high complexity", "CVSS_V3", "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9},
	{"v3.1 local", "CVSS_V3", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8},
	{"v3.0 xss", "CVSS_V3", "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1},
	{"v3.1 changed low privileges", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4},
	{"v3.1 physical", "CVSS_V3", "CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6},
	{"v3.1 no impact", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0},
	{"v3.1 CVE-2014-0160 Heartbleed", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5},
	{"v3.1 temporal and environmental ignored", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N/E:U/RL:O/RC:U/CR:L/MAV:P", 7.5},

	{"v4 FIRST calculator", "CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3},
	{"v4 physical", "CVSS_V4", "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H", 7.3},
	{"v4 low", "CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:A/VC:N/VI:N/VA:N/SC:L/SI:N/SA:N", 2.1},
	{"v4 polycvss example", "CVSS_V4", "CVSS:4.0/AV:L/AC:H/AT:N/PR:N/UI:P/VC:L/VI:L/VA:L/SC:H/SI:H/SA:H", 5.2},
	{"v4 no impact", "CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N", 0},
	// E:U makes CVSS-BT 4.1; the base score stays 7.3.
	{"v4 threat ignored", "CVSS_V4", "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:U", 7.3},
	{"v4 supplemental ignored", "CVSS_V4", "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/S:N/AU:N/R:A/V:D/RE:L/U:Clear", 7.3},
	// Every metric group at once, the longest kind of vector: environmental
	// metrics that would raise the score (MAV:N, MSI:S) are ignored too.
	{"v4 every group ignored", "CVSS_V4", "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:U/CR:L/IR:L/AR:L/MAV:N/MAC:L/MAT:N/MPR:N/MUI:N/MVC:N/MVI:N/MVA:N/MSC:N/MSI:S/MSA:S/S:P/AU:Y/R:U/V:C/RE:H/U:Amber", 7.3},
}

func TestCVSSScore(t *testing.T) {
	for _, tc := range cvssReference {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CVSSScore(tc.typ, tc.vector)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("CVSSScore(%s, %s) (-want +got):\n%s", tc.typ, tc.vector, diff)
			}
		})
	}
}

func TestCVSSScoreInvalid(t *testing.T) {
	huge := "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/" + strings.Repeat("E:X/", 1<<18)
	tests := []struct {
		name   string
		typ    string
		vector string
	}{
		{"v2 with a prefix", "CVSS_V2", "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:N/A:N"},
		{"v2 missing metric", "CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:N"},
		{"v2 unknown value", "CVSS_V2", "AV:X/AC:L/Au:N/C:P/I:N/A:N"},
		{"v2 partial temporal group", "CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:N/A:N/E:POC"},
		{"v3 labelled CVSS_V2", "CVSS_V2", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"},
		{"v3 wrong prefix", "CVSS_V3", "CVSS:2.0/AV:N"},
		{"v3 unknown version", "CVSS_V3", "CVSS:3.2/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
		{"v3 unknown value", "CVSS_V3", "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
		{"v3 unknown scope", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:Q/C:H/I:H/A:H"},
		{"v3 missing metric", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"},
		{"v3 duplicate metric", "CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:N"},
		{"v4 labelled CVSS_V3", "CVSS_V3", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
		{"empty", "CVSS_V3", ""},
		{"v3 labelled CVSS_V4", "CVSS_V4", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
		{"v4 wrong prefix", "CVSS_V4", "CVSS:4.1/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"},
		{"v4 prefix only", "CVSS_V4", "CVSS:4.0"},
		{"v4 missing metric", "CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N"},
		{"v4 unknown value", "CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:Q/VI:H/VA:H/SC:N/SI:N/SA:N"},
		{"v4 unknown metric", "CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/ZZ:1"},
		{"not a CVSS type", "Ubuntu", "medium"},
		{"huge", "CVSS_V3", huge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CVSSScore(tc.typ, tc.vector)
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("CVSSScore(%s, %.60q) = %v, %v; want ErrInvalidEntry", tc.typ, tc.vector, got, err)
			}
			// The error names the vector, and only a bounded prefix of a
			// huge one.
			name := tc.vector
			if len(name) > maxVectorLen {
				name = name[:32]
			}
			if msg := err.Error(); !strings.Contains(msg, name) || len(msg) > 2*maxVectorLen {
				t.Errorf("error %.300q: want it to name %.60q in under %d bytes", msg, name, 2*maxVectorLen)
			}
		})
	}
}

func TestCVSSRating(t *testing.T) {
	tests := []struct {
		typ   string
		score float64
		want  string
	}{
		// NVD's CVSS v2 scale: Low 0.0-3.9, Medium 4.0-6.9, High 7.0-10.0.
		{"CVSS_V2", 0, "low"},
		{"CVSS_V2", 3.9, "low"},
		{"CVSS_V2", 4.0, "medium"},
		{"CVSS_V2", 6.9, "medium"},
		{"CVSS_V2", 7.0, "high"},
		{"CVSS_V2", 10, "high"},
		// CVSS v3.x §5 and v4.0 §6: None 0.0, Low 0.1-3.9, Medium 4.0-6.9,
		// High 7.0-8.9, Critical 9.0-10.0.
		{"CVSS_V3", 0, ""},
		{"CVSS_V3", 0.1, "low"},
		{"CVSS_V3", 3.9, "low"},
		{"CVSS_V3", 4.0, "medium"},
		{"CVSS_V3", 6.9, "medium"},
		{"CVSS_V3", 7.0, "high"},
		{"CVSS_V3", 8.9, "high"},
		{"CVSS_V3", 9.0, "critical"},
		{"CVSS_V3", 10, "critical"},
		{"CVSS_V4", 0, ""},
		{"CVSS_V4", 0.1, "low"},
		{"CVSS_V4", 3.9, "low"},
		{"CVSS_V4", 4.0, "medium"},
		{"CVSS_V4", 6.9, "medium"},
		{"CVSS_V4", 7.0, "high"},
		{"CVSS_V4", 8.9, "high"},
		{"CVSS_V4", 9.0, "critical"},
		{"CVSS_V4", 10, "critical"},
		{"Ubuntu", 9.0, ""},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, cvssRating(tc.typ, tc.score)); diff != "" {
			t.Errorf("cvssRating(%s, %v) (-want +got):\n%s", tc.typ, tc.score, diff)
		}
	}
}

func TestSeverityOf(t *testing.T) {
	const (
		v2Heartbleed = `{"type":"CVSS_V2","score":"AV:N/AC:L/Au:N/C:P/I:N/A:N"}`                                          // 5.0
		v2Shellshock = `{"type":"CVSS_V2","score":"AV:N/AC:L/Au:N/C:C/I:C/A:C"}`                                          // 10.0
		v3Heartbleed = `{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}`                        // 7.5
		v3Critical   = `{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}`                        // 9.8
		v4Critical   = `{"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}`     // 9.3
		v4Low        = `{"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:A/VC:N/VI:N/VA:N/SC:L/SI:N/SA:N"}`     // 2.1
		v4Unproven   = `{"type":"CVSS_V4","score":"CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H/E:U"}` // 7.3, BT 4.1
		v3AsV4       = `{"type":"CVSS_V4","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}`                        // invalid
	)
	entry := func(severity string) string {
		return `{"id":"X","severity":[` + severity + `],"affected":[{"package":{"ecosystem":"Debian:12","name":"p"},"versions":["1"]}]}`
	}
	tests := []struct {
		name string
		e    string
		want string
	}{
		{"ubuntu word", `{"id":"U","severity":[{"type":"Ubuntu","score":"medium"}],"affected":[{"package":{"ecosystem":"Ubuntu:22.04","name":"p"},"versions":["1"]}]}`, "medium"},
		{"github moderate", `{"id":"G","database_specific":{"severity":"MODERATE"},"affected":[{"package":{"ecosystem":"Debian:12","name":"p"},"versions":["1"]}]}`, "medium"},
		{"affected overrides up", `{"id":"A","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"}],"affected":[{"package":{"ecosystem":"Debian:12","name":"p"},"ecosystem_specific":{"severity":"high"},"versions":["1"]}]}`, "high"},
		{"cvss v4 only", entry(v4Critical), "critical"},
		{"cvss v4 threat metrics do not lower it", entry(v4Unproven), "high"},
		{"cvss v2 only", entry(v2Heartbleed), "medium"},
		{"cvss v2 is never critical", entry(v2Shellshock), "high"},
		{"highest wins over newest version", entry(v4Low + "," + v3Heartbleed), "high"},
		{"highest wins over older version", entry(v2Heartbleed + "," + v3Critical), "critical"},
		{"invalid vector names nothing", entry(v3AsV4), ""},
		{"invalid vector next to a word", entry(v3AsV4 + `,{"type":"Ubuntu","score":"low"}`), "low"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseEntry([]byte(tc.e))
			if err != nil {
				t.Fatal(err)
			}
			advs := e.advisories()
			if len(advs) == 0 {
				t.Fatal("no advisories")
			}
			for _, a := range advs {
				if diff := cmp.Diff(tc.want, a.Severity); diff != "" {
					t.Errorf("severity (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestImportCVSSv2AndV4 imports records whose only severity is a CVSS v2 or
// a CVSS v4 vector and reads their rating back through Advisories.
func TestImportCVSSv2AndV4(t *testing.T) {
	db, _ := openDB(t)
	st, err := db.Import(t.Context(), "testdata/osv-cvss", t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ImportStats{Read: 2, Added: 2}, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	tests := []struct {
		name string
		want []Advisory
	}{
		{"openssl", []Advisory{{
			ID: "DEBIAN-CVE-2014-0160", Aliases: []string{"CVE-2014-0160"}, Summary: "openssl: TLS heartbeat read overrun (Heartbleed)",
			Severity: "medium", // CVSS v2 5.0
			Ranges:   []Range{{Type: "ECOSYSTEM", Events: []Event{{Introduced: "0"}, {Fixed: "1.0.1e-2+deb7u5"}}}},
		}}},
		{"libexample", []Advisory{{
			ID: "DEBIAN-CVE-2025-9101", Aliases: []string{"CVE-2025-9101"}, Summary: "libexample: remote code execution in the parser",
			Severity: "critical", // CVSS v4 9.3
			Ranges:   []Range{{Type: "ECOSYSTEM", Events: []Event{{Introduced: "0"}, {Fixed: "2.4.1-1"}}}},
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.Advisories(t.Context(), "Debian:12", tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("advisories (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzCVSSScore checks that no vector, however malformed, panics the
// scorer or yields a score outside 0-10.
func FuzzCVSSScore(f *testing.F) {
	for _, tc := range cvssReference {
		f.Add(tc.typ, tc.vector)
	}
	f.Fuzz(func(t *testing.T, typ, vector string) {
		score, err := CVSSScore(typ, vector)
		if err == nil && (score < 0 || score > 10) {
			t.Errorf("CVSSScore(%s, %q) = %v", typ, vector, score)
		}
	})
}
