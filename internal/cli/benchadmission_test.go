package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"rung.dev/rung/internal/image"
)

func runBenchAdmissionCmd(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := os.Stat(image.BusyboxPath); err != nil {
		t.Skipf("needs %s: %v", image.BusyboxPath, err)
	}
	cmd := newBenchCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"admission", "--advisories", "300", "--runs", "2", "--min-time", "0", "--dir", t.TempDir()}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("bench admission: %v\n%s", err, out.String())
	}
	if testing.Verbose() {
		t.Log(out.String())
	}
	return out.String()
}

func TestBenchAdmission(t *testing.T) {
	got := runBenchAdmissionCmd(t)
	for _, re := range []string{
		`(?m)^rung bench admission, \d{4}-\d\d-\d\d \d\d:\d\d UTC$`,
		`(?m)^machine: \d+ CPU\(s\), `,
		`(?m)^packages: 744, embedded real Debian 12 dpkg status`,
		`(?m)^database: 300 generated OSV records `,
		`(?m)^scan of the package list, 2 runs per path, interleaved; both find the same \d+ vulnerabilities$`,
		`(?m)^indexed \(rung\) +\d+\.\dms `,
		`(?m)^linear \(baseline\) +\d+\.\dms `,
		`(?m)^indexed is \d+\.\d× faster than linear \(median\)$`,
		`(?m)^IMAGES +IMAGES/S `,
		`(?m)^2 +\d+\.\d +\d+\.\dms `,
	} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("output lacks %s:\n%s", re, got)
		}
	}
}

func TestBenchAdmissionJSON(t *testing.T) {
	var res admissionResult
	if err := json.Unmarshal([]byte(runBenchAdmissionCmd(t, "-o", "json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.Packages != 744 || res.Advisories != 300 || res.Indexed.N != 2 || res.Linear.N != 2 || res.Images != 2 {
		t.Errorf("packages %d advisories %d indexed %d linear %d images %d, want 744 300 2 2 2",
			res.Packages, res.Advisories, res.Indexed.N, res.Linear.N, res.Images)
	}
	if res.Findings == 0 || res.DBBytes == 0 || res.ImagesPerSecond <= 0 || res.Decision == "" {
		t.Errorf("empty figures: %+v", res)
	}
}

func TestBenchAdmissionInvalid(t *testing.T) {
	for _, args := range [][]string{{"--advisories", "0"}, {"--runs", "0"}, {"-o", "yaml"}} {
		cmd := newBenchCmd()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append([]string{"admission"}, args...))
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
