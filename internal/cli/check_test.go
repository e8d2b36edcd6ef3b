package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"rung.dev/rung/internal/golden"
	"rung.dev/rung/internal/image/imagetest"
	"rung.dev/rung/internal/policy"
)

var (
	regexpDays = regexp.MustCompile(`\d+ days ago`)
	regexpTime = regexp.MustCompile(`"time": "[^"]*"`)
)

// runCheck runs the admission commands as Execute would once they are
// wired into the root command.
func runCheck(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := &cobra.Command{Use: "rung", SilenceUsage: true, SilenceErrors: true}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(ExitInvalid, err) })
	img := &cobra.Command{Use: "image"}
	img.AddCommand(newImageSignCmd(), newImageVerifyCmd(), newImageKeygenCmd())
	root.AddCommand(newCheckCmd(), newVulnDBCmd(), img)
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	code := ExitOK
	if err != nil {
		code = ExitFailure
		if s, ok := errors.AsType[silent](err); ok {
			code = s.code
		} else {
			errb.WriteString("rung: " + err.Error() + "\n")
			if e, ok := errors.AsType[*exitError](err); ok {
				code = e.code
			}
		}
	}
	return code, out.String(), errb.String()
}

// tarLayer is a layer of regular files, in name order, mode 0644 unless
// modes says otherwise.
func tarLayer(t *testing.T, files map[string]string, modes map[string]int64) ggcrv1.Layer {
	t.Helper()
	var es []imagetest.Entry
	for _, n := range slices.Sorted(maps.Keys(files)) {
		es = append(es, imagetest.Entry{Name: n, Body: files[n], Mode: modes[n]})
	}
	return imagetest.Layer(t, imagetest.Tar(t, es...))
}

func readTestdata(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testImage is a small Debian-like image. clean images pass every
// configuration check; the others run as root, expose port 80 and carry a
// setuid binary and a key.
func testImage(t *testing.T, clean bool) ggcrv1.Image {
	t.Helper()
	files := map[string]string{
		"etc/os-release":      readTestdata(t, "../scan/testdata/os-release-debian12"),
		"var/lib/dpkg/status": readTestdata(t, "../scan/testdata/dpkg-status"),
		"app/run":             "#!/bin/sh\n",
	}
	modes := map[string]int64{"app/run": 0o755}
	if !clean {
		files["usr/bin/su"] = "ELF"
		modes["usr/bin/su"] = 0o4755
		files["app/.env"] = "TOKEN=x"
	}
	img, err := mutate.AppendLayers(empty.Image, tarLayer(t, files, modes))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.Created = ggcrv1.Time{Time: time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second)}
	cfg.Config.User = "65532:65532"
	cfg.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	cfg.Config.Healthcheck = &ggcrv1.HealthConfig{Test: []string{"CMD", "/app/run"}}
	if !clean {
		cfg.Created = ggcrv1.Time{Time: time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)}
		cfg.Config.User = ""
		cfg.Config.ExposedPorts = map[string]struct{}{"80/tcp": {}}
		cfg.Config.Healthcheck = nil
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushImage(t *testing.T, ref string, img ggcrv1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// TestCheckImageSignedInRegistry is the CI flow: keygen, sign, then the
// admission check with the tenant's key, offline but for the registry.
func TestCheckImageSignedInRegistry(t *testing.T) {
	// CI's way: keygen encrypts the key, sign decrypts it, both with this.
	t.Setenv("COSIGN_PASSWORD", "ci-secret")
	reg := imagetest.Registry(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ref := reg + "/acme/api:1.0"
	pushImage(t, ref, testImage(t, true))

	if code, _, stderr := runCheck(t, "image", "keygen", filepath.Join(dir, "ci")); code != ExitOK {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCheck(t, "image", "keygen", filepath.Join(dir, "other")); code != ExitOK {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	// Unsigned: rejected, naming the check.
	code, out, stderr := runCheck(t, "check", "image", ref, "--data-dir", data, "--key", filepath.Join(dir, "ci.pub"))
	if code != ExitRejected || !strings.Contains(out, "RUNG-image-signature") {
		t.Fatalf("unsigned: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runCheck(t, "image", "sign", ref, "--key", filepath.Join(dir, "ci.key"))
	if code != ExitOK || !strings.Contains(out, "signed "+reg+"/acme/api@sha256:") {
		t.Fatalf("sign: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runCheck(t, "check", "image", ref, "--data-dir", data, "--key", filepath.Join(dir, "ci.pub"))
	if code != ExitOK || !strings.Contains(out, "ADMITTED") {
		t.Fatalf("signed: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runCheck(t, "image", "verify", ref, "--key", filepath.Join(dir, "ci.pub"))
	if code != ExitOK || !strings.Contains(out, "signed by") {
		t.Errorf("verify: exit %d: %s", code, out)
	}
	code, _, _ = runCheck(t, "image", "verify", ref, "--key", filepath.Join(dir, "other.pub"))
	if code != ExitRejected {
		t.Errorf("verify with another key: exit %d, want %d", code, ExitRejected)
	}

	// The tenant's manifest names the key and the registry allow-list.
	write(t, dir, "tenant.yaml", "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: acme}\nspec:\n  images:\n    registries: [\"registry.campus.example/\"]\n    signedBy: [ci.pub]\n")
	code, out, _ = runCheck(t, "check", "image", ref, "--data-dir", data, "-f", filepath.Join(dir, "tenant.yaml"), "--tenant", "acme", "-o", "json")
	var d policy.Decision
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if code != ExitRejected || d.Allowed || len(d.Findings) != 1 || d.Findings[0].ID != "RUNG-image-registry" || !slices.Contains(d.Checked, "RUNG-image-signature") {
		t.Errorf("tenant policy: exit %d, decision %+v", code, d)
	}
}

// TestCheckImageLayoutGolden checks an unclean image from an OCI layout
// against an imported database, in all three output formats.
func TestCheckImageLayoutGolden(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(testImage(t, false)); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCheck(t, "vulndb", "import", "--data-dir", data, "../scan/testdata/osv")
	if code != ExitOK || !strings.Contains(out, "8 read, 6 added") {
		t.Fatalf("import: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runCheck(t, "vulndb", "stats", "--data-dir", data)
	if code != ExitOK || !strings.Contains(out, "6 vulnerabilities, 7 package advisories") {
		t.Errorf("stats: exit %d: %s", code, out)
	}
	ref := "oci-layout:" + filepath.Join(dir, "layout")
	for _, format := range []string{"table", "json", "sarif"} {
		code, out, stderr := runCheck(t, "check", "image", ref, "--data-dir", data, "-o", format)
		if code != ExitRejected {
			t.Fatalf("%s: exit %d\n%s%s", format, code, out, stderr)
		}
		out = strings.ReplaceAll(out, dir, "DIR")
		out = regexpDays.ReplaceAllString(out, "N days ago")
		out = regexpTime.ReplaceAllString(out, `"time": "TIME"`)
		golden.Check(t, filepath.Join("testdata", "check-image."+format), []byte(out))
	}
	// Blocking only on critical keeps the low zlib advisory a note; the
	// critical openssl one still rejects.
	code, out, _ = runCheck(t, "check", "image", ref, "--data-dir", data, "-o", "json", "--block-severity", "critical")
	var d policy.Decision
	json.Unmarshal([]byte(out), &d)
	var vulns []string
	for _, f := range d.Findings {
		if f.ID == "CIS-4.4" {
			vulns = append(vulns, f.Advisory+"/"+f.Detail[strings.Index(f.Detail, " in ")+4:strings.Index(f.Detail, " in ")+11])
		}
	}
	if diff := cmp.Diff([]string{"DSA-9001-1/libssl3", "DSA-9001-1/openssl"}, vulns); diff != "" {
		t.Errorf("exit %d; vulnerability findings (-want +got):\n%s", code, diff)
	}
	// Below critical, the configuration findings are notes too: root, the
	// secret, the port, the low vulnerability and the missing healthcheck;
	// the setuid file is one whatever the threshold (unpack strips it).
	criticalNotes := []string{"CIS-4.1", "CIS-4.10", "CIS-4.8", "CIS-5.8", "CIS-4.4", "CIS-4.6"}
	if diff := cmp.Diff(criticalNotes, findingIDs(d.Notes)); diff != "" {
		t.Errorf("notes at --block-severity critical (-want +got):\n%s", diff)
	}
	// The same from the tenant's spec.images.blockSeverity, with an image
	// rule of a Policy given with -f.
	mdir := t.TempDir()
	write(t, mdir, "m.yaml", `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
spec: {images: {blockSeverity: critical}}
---
apiVersion: rung.dev/v1
kind: Policy
metadata: {name: site}
spec:
  admission:
    rules:
    - {id: SITE-no-openssl, title: No openssl, on: image, deny: 'image.packages.exists(p, p.name == "openssl")'}
`)
	code, out, _ = runCheck(t, "check", "image", ref, "--data-dir", data, "-o", "json", "-f", mdir, "--tenant", "acme")
	d = policy.Decision{}
	json.Unmarshal([]byte(out), &d)
	var ids []string
	for _, f := range d.Findings {
		if f.ID == "CIS-4.4" || f.ID == "SITE-no-openssl" {
			ids = append(ids, f.ID+"/"+f.Advisory)
		}
	}
	if diff := cmp.Diff([]string{"CIS-4.4/DSA-9001-1", "CIS-4.4/DSA-9001-1", "SITE-no-openssl/"}, ids); diff != "" {
		t.Errorf("tenant blockSeverity and Policy rule: exit %d; findings (-want +got):\n%s", code, diff)
	}
	if diff := cmp.Diff(criticalNotes, findingIDs(d.Notes)); diff != "" {
		t.Errorf("notes at the tenant's blockSeverity critical (-want +got):\n%s", diff)
	}
}

func TestCheckInvalid(t *testing.T) {
	for _, args := range [][]string{
		{"check", "image", "x", "-o", "yaml"},
		{"check", "image", "oci-layout:/nonexistent", "--block-severity", "severe"},
		{"check", "image", "x", "-f", "nowhere.yaml"},
		{"check", "list", "--rules", "/nonexistent"},
	} {
		if code, _, stderr := runCheck(t, args...); code != ExitInvalid {
			t.Errorf("%v: exit %d, want %d: %s", args, code, ExitInvalid, stderr)
		}
	}
}

func TestCheckWorkloadAndRules(t *testing.T) {
	dir := t.TempDir()
	manifests := write(t, dir, "m.yaml", `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: ok, tenant: acme}
spec: {image: registry.example/ok@sha256:0000000000000000000000000000000000000000000000000000000000000000}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: admin, tenant: acme}
spec: {image: "registry.example/admin:latest", privilege: elevated, capabilities: [SYS_ADMIN]}
`)
	rules := write(t, dir, "rules.yaml", `rules:
- id: site-no-latest
  title: Images are pinned by digest
  severity: high
  fix: use IMAGE@sha256:...
  deny: 'workload.image.endsWith(":latest")'
`)
	code, out, stderr := runCheck(t, "check", "workload", "-f", manifests, "--rules", rules)
	if code != ExitRejected {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out, "workload ok: ADMITTED") || !strings.Contains(out, "CIS-5.4") || !strings.Contains(out, "site-no-latest") {
		t.Errorf("output:\n%s", out)
	}
	code, out, _ = runCheck(t, "check", "workload", "ok", "-f", manifests, "-o", "json")
	if code != ExitOK || !strings.Contains(out, `"allowed": true`) {
		t.Errorf("one workload: exit %d\n%s", code, out)
	}
	code, out, _ = runCheck(t, "check", "list", "--rules", rules)
	if code != ExitOK || !strings.Contains(out, "PSS-restricted-capabilities") || !strings.Contains(out, "site-no-latest") {
		t.Errorf("list: exit %d\n%s", code, out)
	}
	bad := write(t, dir, "bad.yaml", "rules:\n- {id: CIS-5.4, title: mine, deny: 'false'}\n")
	if code, _, stderr := runCheck(t, "check", "list", "--rules", bad); code != ExitInvalid || !strings.Contains(stderr, "built-in") {
		t.Errorf("overriding a built-in: exit %d: %s", code, stderr)
	}
}

// TestCheckPolicyAdmission: the admission rules of Policies given with -f
// apply, with those of --rules; a Policy whose rules do not compile is
// invalid input.
func TestCheckPolicyAdmission(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "m.yaml", `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: big, tenant: acme}
spec: {image: "registry.example/big:latest", replicas: 6}
---
apiVersion: rung.dev/v1
kind: Policy
metadata: {name: site}
spec:
  admission:
    rules:
    - id: SITE-max-replicas
      title: At most 5 replicas
      severity: high
      fix: use 5 or fewer
      deny: 'workload.replicas > 5'
`)
	rules := write(t, t.TempDir(), "rules.yaml", `rules:
- {id: site-no-latest, title: Images are pinned, deny: 'workload.image.endsWith(":latest")'}
`)
	code, out, stderr := runCheck(t, "check", "workload", "-f", dir, "--rules", rules)
	if code != ExitRejected || !strings.Contains(out, "SITE-max-replicas") || !strings.Contains(out, "site-no-latest") {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runCheck(t, "check", "list", "-f", dir)
	if code != ExitOK || !strings.Contains(out, "SITE-max-replicas") || !strings.Contains(out, "CIS-5.4") {
		t.Errorf("list: exit %d\n%s", code, out)
	}
	bad := t.TempDir()
	write(t, bad, "p.yaml", `apiVersion: rung.dev/v1
kind: Policy
metadata: {name: site}
spec:
  admission:
    rules:
    - {id: SITE-broken, title: Broken, deny: 'workload.replicas >'}
`)
	code, _, stderr = runCheck(t, "check", "list", "-f", bad)
	if code != ExitInvalid || !strings.Contains(stderr, "SITE-broken") {
		t.Errorf("bad rule: exit %d: %s", code, stderr)
	}
	// check image reads the Policies too: a bad rule fails before the image is read.
	code, _, stderr = runCheck(t, "check", "image", "oci-layout:/nonexistent", "-f", bad)
	if code != ExitInvalid || !strings.Contains(stderr, "SITE-broken") {
		t.Errorf("check image with a bad Policy: exit %d: %s", code, stderr)
	}
}

func findingIDs(fs []policy.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}
