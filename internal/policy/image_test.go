package policy

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/golden"
)

// goodImage passes every image check.
func goodImage() ImageInput {
	return ImageInput{
		Tenant:     tenant(),
		Ref:        "registry.example/acme/api:1.0",
		Repository: "registry.example/acme/api",
		Digest:     "sha256:aaaa",
		Facts: ImageFacts{
			User:         "65532:65532",
			ExposedPorts: []string{"8080/tcp"},
			Healthcheck:  true,
			Created:      now.Add(-30 * 24 * time.Hour),
			Files: []File{
				{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{Path: "/bin/sh", Mode: fs.ModeSymlink | 0o777},
			},
			VulnDB: true,
		},
		Now: now,
	}
}

func TestImageChecks(t *testing.T) {
	sev := func(s Severity) *Severity { return &s }
	tests := []struct {
		name  string
		mod   func(*ImageInput)
		want  []string
		notes []string
		path  string // a finding's path
	}{
		{name: "good"},
		{name: "no user", mod: func(in *ImageInput) { in.Facts.User = "" }, want: []string{"CIS-4.1"}},
		{name: "root user", mod: func(in *ImageInput) { in.Facts.User = "root:root" }, want: []string{"CIS-4.1"}},
		{name: "uid 0", mod: func(in *ImageInput) { in.Facts.User = "0" }, want: []string{"CIS-4.1"}},
		{name: "privileged ports", mod: func(in *ImageInput) { in.Facts.ExposedPorts = []string{"22/tcp", "80/tcp", "8443/tcp"} },
			notes: []string{"CIS-5.8", "CIS-5.8"}},
		{name: "privileged ports block at medium", mod: func(in *ImageInput) {
			in.BlockSeverity = sev(SeverityMedium)
			in.Facts.ExposedPorts = []string{"80/tcp"}
		}, want: []string{"CIS-5.8"}},
		// Unpack strips the bits, so CIS-4.8 never rejects, whatever the
		// threshold: check and unpack agree.
		{name: "setuid", mod: func(in *ImageInput) {
			in.Facts.Files = append(in.Facts.Files, File{Path: "/usr/bin/passwd", Mode: fs.ModeSetuid | 0o755})
		}, notes: []string{"CIS-4.8"}, path: "/usr/bin/passwd"},
		{name: "setgid even when everything blocks", mod: func(in *ImageInput) {
			in.BlockSeverity = sev(SeverityUnknown)
			in.Facts.Files = append(in.Facts.Files, File{Path: "/usr/bin/wall", Mode: fs.ModeSetgid | 0o755})
		}, notes: []string{"CIS-4.8"}},
		{name: "setuid directory is not a file", mod: func(in *ImageInput) {
			in.Facts.Files = append(in.Facts.Files, File{Path: "/srv", Mode: fs.ModeDir | fs.ModeSetgid | 0o755})
		}},
		{name: "world-writable", mod: func(in *ImageInput) {
			in.Facts.Files = append(in.Facts.Files, File{Path: "/app/data", Mode: fs.ModeDir | 0o777}, File{Path: "/app/run.sh", Mode: 0o666})
		}, notes: []string{"RUNG-image-world-writable", "RUNG-image-world-writable"}},
		{name: "world-writable blocks at low", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.BlockSeverity = "low"
			in.Facts.Files = append(in.Facts.Files, File{Path: "/app/run.sh", Mode: 0o666})
		}, want: []string{"RUNG-image-world-writable"}},
		{name: "device nodes and fifos are notes, never world-writable", mod: func(in *ImageInput) {
			in.BlockSeverity = sev(SeverityUnknown)
			in.Facts.Files = append(in.Facts.Files,
				File{Path: "/dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666},
				File{Path: "/dev/sda", Mode: fs.ModeDevice | 0o660},
				File{Path: "/run/initctl", Mode: fs.ModeNamedPipe | 0o666})
		}, notes: []string{"RUNG-image-special-files", "RUNG-image-special-files", "RUNG-image-special-files"}, path: "/dev/null"},
		{name: "secret", mod: func(in *ImageInput) {
			in.Facts.Files = append(in.Facts.Files, File{Path: "/root/.ssh/id_rsa", Mode: 0o600, Secret: "SSH private key"})
		}, want: []string{"CIS-4.10"}, path: "/root/.ssh/id_rsa"},
		{name: "secret below a critical threshold", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.BlockSeverity = "critical"
			in.Facts.Files = append(in.Facts.Files, File{Path: "/root/.ssh/id_rsa", Mode: 0o600, Secret: "SSH private key"})
		}, notes: []string{"CIS-4.10"}},
		{name: "root below a critical threshold", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.BlockSeverity = "critical"
			in.Facts.User = ""
		}, notes: []string{"CIS-4.1"}},
		// The path of an image packed from a plain directory: a note under
		// the default threshold, a finding when the tenant blocks on low.
		{name: "no healthcheck", mod: func(in *ImageInput) { in.Facts.Healthcheck = false }, notes: []string{"CIS-4.6"}},
		{name: "no healthcheck blocks at low", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.BlockSeverity = "low"
			in.Facts.Healthcheck = false
		}, want: []string{"CIS-4.6"}},
		{name: "a threshold that does not parse blocks everything", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.BlockSeverity = "whatever"
			in.Facts.Healthcheck = false
		}, want: []string{"CIS-4.6"}},
		{name: "old", mod: func(in *ImageInput) { in.Facts.Created = now.AddDate(-2, 0, 0) }, want: []string{"RUNG-image-age"}},
		{name: "old blocks whatever the threshold", mod: func(in *ImageInput) {
			in.BlockSeverity = sev(SeverityCritical)
			in.Facts.Created = now.AddDate(-2, 0, 0)
		}, want: []string{"RUNG-image-age"}},
		{name: "epoch created skips age", mod: func(in *ImageInput) { in.Facts.Created = time.Unix(0, 0) }},
		{name: "registry allowed", mod: func(in *ImageInput) { in.Tenant.Spec.Images.Registries = []string{"registry.example/"} }},
		{name: "registry denied", mod: func(in *ImageInput) { in.Tenant.Spec.Images.Registries = []string{"registry.campus.example/"} },
			want: []string{"RUNG-image-registry"}},
		{name: "local image with registry list", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.Registries = []string{"registry.example/"}
			in.Ref, in.Repository = "oci-layout:/tmp/x", ""
		}, want: []string{"RUNG-image-registry"}},
		{name: "signature required, not checked", mod: func(in *ImageInput) { in.Tenant.Spec.Images.SignedBy = []string{"ci.pub"} },
			want: []string{"RUNG-image-signature"}},
		{name: "signature invalid", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.SignedBy = []string{"ci.pub"}
			in.Signature = &Signature{Reason: "no signature by ci.pub"}
		}, want: []string{"RUNG-image-signature"}},
		{name: "registry denied whatever the threshold", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.BlockSeverity = "critical"
			in.Tenant.Spec.Images.Registries = []string{"registry.campus.example/"}
		}, want: []string{"RUNG-image-registry"}},
		{name: "signature verified", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.SignedBy = []string{"ci.pub"}
			in.Signature = &Signature{Verified: true, Key: "ci.pub"}
		}},
		{name: "vulnerabilities over default threshold", mod: func(in *ImageInput) {
			in.Facts.Vulnerabilities = []Vulnerability{
				{ID: "CVE-1", Package: "openssl", Version: "1", FixedIn: "2", Severity: SeverityCritical},
				{ID: "CVE-2", Package: "zlib", Version: "1", Severity: SeverityMedium},
				{ID: "CVE-3", Package: "zlib", Version: "1", Severity: SeverityUnknown},
			}
		}, want: []string{"CIS-4.4"}, notes: []string{"CIS-4.4", "CIS-4.4"}},
		{name: "tenant blocks on medium", mod: func(in *ImageInput) {
			in.BlockSeverity = sev(SeverityMedium)
			in.Facts.Vulnerabilities = []Vulnerability{{ID: "CVE-2", Package: "zlib", Version: "1", Severity: SeverityMedium}}
		}, want: []string{"CIS-4.4"}},
		{name: "tenant blocks only critical", mod: func(in *ImageInput) {
			in.BlockSeverity = sev(SeverityCritical)
			in.Facts.Vulnerabilities = []Vulnerability{{ID: "CVE-4", Package: "bash", Version: "5", Severity: SeverityHigh}}
		}, notes: []string{"CIS-4.4"}},
		{name: "tenant manifest blocks on medium", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.BlockSeverity = "medium"
			in.Facts.Vulnerabilities = []Vulnerability{{ID: "CVE-2", Package: "zlib", Version: "1", Severity: SeverityMedium}}
		}, want: []string{"CIS-4.4"}},
		{name: "tenant manifest blocks only critical", mod: func(in *ImageInput) {
			in.Tenant.Spec.Images.BlockSeverity = "critical"
			in.Facts.Vulnerabilities = []Vulnerability{{ID: "CVE-4", Package: "bash", Version: "5", Severity: SeverityHigh}}
		}, notes: []string{"CIS-4.4"}},
		{name: "inventory gap", mod: func(in *ImageInput) { in.Facts.Gaps = []string{"distribution unknown"} }, notes: []string{"RUNG-image-inventory"}},
		{name: "unreadable database refused when scanning", mod: func(in *ImageInput) {
			in.Facts.Unreadable = []string{"/var/lib/rpm/Packages: package database unreadable: EOF"}
		}, want: []string{"CIS-4.4"}},
		{name: "unreadable database noted without a vulnerability database", mod: func(in *ImageInput) {
			in.Facts.VulnDB = false
			in.Facts.Unreadable = []string{"/var/lib/rpm/Packages: package database unreadable: EOF"}
		}, notes: []string{"RUNG-image-inventory"}},
	}
	e := newEngine(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := goodImage()
			if tc.mod != nil {
				tc.mod(&in)
			}
			d := e.Image(in)
			if diff := cmp.Diff(tc.want, ids(d.Findings)); diff != "" {
				t.Errorf("findings (-want +got):\n%s\n%v", diff, d.Findings)
			}
			if diff := cmp.Diff(tc.notes, ids(d.Notes)); diff != "" {
				t.Errorf("notes (-want +got):\n%s\n%v", diff, d.Notes)
			}
			if d.Allowed != (len(tc.want) == 0) {
				t.Errorf("Allowed = %v with %d findings", d.Allowed, len(d.Findings))
			}
			if tc.path != "" && !slices.ContainsFunc(append(d.Findings, d.Notes...), func(f Finding) bool { return f.Path == tc.path }) {
				t.Errorf("no finding at %s", tc.path)
			}
		})
	}
}

func TestImageSkipsWithoutFacts(t *testing.T) {
	e := newEngine(t, Config{})
	in := goodImage()
	in.Facts.VulnDB = false
	d := e.Image(in)
	var skipped []string
	for _, s := range d.Skipped {
		id, _, _ := strings.Cut(s, ":")
		skipped = append(skipped, id)
	}
	want := []string{"RUNG-image-registry", "RUNG-image-signature", "CIS-4.4"}
	if diff := cmp.Diff(want, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
}

func TestMaxImageAge(t *testing.T) {
	e := newEngine(t, Config{MaxImageAge: 7 * 24 * time.Hour})
	if d := e.Image(goodImage()); !slices.Equal(ids(d.Findings), []string{"RUNG-image-age"}) {
		t.Errorf("findings %v, want RUNG-image-age", d.Findings)
	}
}

// failing is an image that fails many checks at once, for the golden files.
func failing() ImageInput {
	in := goodImage()
	in.Tenant.Spec.Images = v1.ImagePolicy{Registries: []string{"registry.campus.example/"}, SignedBy: []string{"keys/ci.pub"}}
	in.Signature = &Signature{Reason: "no signature found for sha256:aaaa"}
	in.Facts.User = ""
	in.Facts.ExposedPorts = []string{"80/tcp"}
	in.Facts.Healthcheck = false
	in.Facts.Files = append(in.Facts.Files,
		File{Path: "/usr/bin/su", Mode: fs.ModeSetuid | 0o755},
		File{Path: "/app/.env", Mode: 0o644, Secret: "dotenv file"},
	)
	in.Facts.Vulnerabilities = []Vulnerability{
		{ID: "DSA-5000-1", Aliases: []string{"CVE-2024-0001"}, Package: "openssl", Version: "3.0.1-1", FixedIn: "3.0.2-1", Severity: SeverityCritical, Summary: "openssl security update"},
		{ID: "DEBIAN-CVE-2024-0002", Package: "zlib", Version: "1:1.2.13", Severity: SeverityLow},
	}
	return in
}

func TestDecisionGolden(t *testing.T) {
	e := newEngine(t, Config{})
	d := e.Image(failing())
	if err := d.Err(); !errors.Is(err, ErrRejected) {
		t.Fatalf("Err() = %v", err)
	}
	j, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "decision.json"), append(j, '\n'))
	s, err := json.MarshalIndent(SARIF(d), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "decision.sarif"), append(s, '\n'))
	golden.Check(t, filepath.Join("testdata", "decision.err"), []byte(d.Err().Error()+"\n"))
}

func TestSARIFShape(t *testing.T) {
	e := newEngine(t, Config{})
	log := SARIF(e.Image(failing()))
	if log.Version != "2.1.0" || len(log.Runs) != 1 {
		t.Fatalf("version %s, %d runs", log.Version, len(log.Runs))
	}
	run := log.Runs[0]
	for _, r := range run.Results {
		if run.Tool.Driver.Rules[r.RuleIndex].ID != r.RuleID {
			t.Errorf("result %s points at rule %s", r.RuleID, run.Tool.Driver.Rules[r.RuleIndex].ID)
		}
		if len(r.Locations) == 0 {
			t.Errorf("result %s has no location", r.RuleID)
		}
	}
}
