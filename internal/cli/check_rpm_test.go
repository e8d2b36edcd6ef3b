package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/scan/rpmtest"
)

// TestCheckImageRPM is `rung check image` on an AlmaLinux-like image whose
// rpm database rpm itself wrote: the advisory for rung-hello below
// 2:1.2.4 rejects it for both binary packages of that source, and the
// same image with its database corrupted is rejected as unscannable
// rather than admitted with no packages.
func TestCheckImageRPM(t *testing.T) {
	dbpath := rpmtest.Build(t)
	sqlite, err := os.ReadFile(filepath.Join(dbpath, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if code, out, stderr := runCheck(t, "vulndb", "import", "--data-dir", data, "../scan/testdata/osv"); code != ExitOK {
		t.Fatalf("import: exit %d\n%s%s", code, out, stderr)
	}
	check := func(db string) policy.Decision {
		t.Helper()
		img, err := mutate.AppendLayers(empty.Image, tarLayer(t, map[string]string{
			"etc/os-release":           "ID=almalinux\nVERSION_ID=9.4\n",
			"var/lib/rpm/rpmdb.sqlite": db,
		}, nil))
		if err != nil {
			t.Fatal(err)
		}
		lp, err := layout.Write(t.TempDir(), empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := lp.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		ref := "oci-layout:" + string(lp)
		code, out, stderr := runCheck(t, "check", "image", ref, "--data-dir", data, "-o", "json")
		if code != ExitRejected {
			t.Fatalf("exit %d, want rejected\n%s%s", code, out, stderr)
		}
		var d policy.Decision
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return d
	}

	var vulns []string
	for _, f := range check(string(sqlite)).Findings {
		if f.Advisory != "" {
			vulns = append(vulns, f.Advisory+" "+strings.Fields(f.Detail)[2])
		}
	}
	slices.Sort(vulns)
	if want := []string{"ALSA-2025:9006 libhello", "ALSA-2025:9006 rung-hello"}; !slices.Equal(vulns, want) {
		t.Errorf("vulnerability findings %q, want %q", vulns, want)
	}

	broken := check(string(sqlite[:len(sqlite)/3]))
	if !slices.ContainsFunc(broken.Findings, func(f policy.Finding) bool {
		return f.ID == "CIS-4.4" && strings.Contains(f.Detail, "/var/lib/rpm/rpmdb.sqlite") && strings.Contains(f.Detail, "unreadable")
	}) {
		t.Errorf("corrupt database: findings %+v, want CIS-4.4 naming the unreadable rpm database", broken.Findings)
	}
}
