package policy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
)

// ImageInput is what admission knows about one image.
type ImageInput struct {
	// Tenant is the image's tenant: its registry allow-list and signing
	// keys apply. A zero Tenant (rung check image without one) has none.
	Tenant v1.Tenant
	// Ref is the reference as given (a registry reference, oci-layout:DIR,
	// docker-archive:FILE or a store name).
	Ref string
	// Repository is the canonical repository of a registry reference
	// ("index.docker.io/library/debian"), empty for local sources.
	Repository string
	// Digest is the manifest digest that was inspected.
	Digest string
	// Facts are the image's contents, from internal/scan.
	Facts ImageFacts
	// Signature is the outcome of signature verification; nil when it was
	// not attempted.
	Signature *Signature
	// BlockSeverity is the tenant's threshold: a vulnerability or a
	// finding of a check with BlockAtSeverity at or above it rejects the
	// image, one below it is a note. Nil means the tenant's spec.images.blockSeverity, or
	// DefaultBlockSeverity when it sets none.
	BlockSeverity *Severity
	// Now is the time of the decision.
	Now time.Time
}

// ImageFacts is what an inspection of the image config and layers found.
type ImageFacts struct {
	// User is the config's USER ("" when unset).
	User string `json:"user"`
	// ExposedPorts are the config's ports, "80/tcp".
	ExposedPorts []string `json:"exposedPorts,omitempty"`
	// Healthcheck is true when the config has a HEALTHCHECK that is not NONE.
	Healthcheck bool `json:"healthcheck"`
	// Created is the config's created time (zero when absent).
	Created time.Time         `json:"created"`
	Env     []string          `json:"env,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// OS names the distribution from /etc/os-release ("debian 12").
	OS string `json:"os,omitempty"`
	// Files are the notable files in the final filesystem: setuid, setgid,
	// world-writable and secret-looking ones.
	Files []File `json:"files,omitempty"`
	// Packages is the OS package inventory.
	Packages []Package `json:"packages,omitempty"`
	// Vulnerabilities are the packages' known vulnerabilities.
	Vulnerabilities []Vulnerability `json:"vulnerabilities,omitempty"`
	// VulnDB is true when a vulnerability database was consulted.
	VulnDB bool `json:"vulnDB"`
	// Gaps say what could not be inventoried, and why.
	Gaps []string `json:"gaps,omitempty"`
	// Unreadable lists the package databases the image has but that could
	// not be read (corrupt, hostile, too slow), each with the reason. With
	// a vulnerability database such an image is refused: its packages
	// can't be checked, and an unchecked image doesn't run.
	Unreadable []string `json:"unreadable,omitempty"`
}

// File is a notable file in the image's final filesystem.
type File struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
	UID  int         `json:"uid"`
	GID  int         `json:"gid"`
	// Secret says why the file looks like a secret; empty otherwise.
	Secret string `json:"secret,omitempty"`
}

// Package is one installed OS package.
type Package struct {
	// Name is the binary package name.
	Name    string `json:"name"`
	Version string `json:"version"`
	// Source and SourceVersion name the source package (Debian "Source:",
	// Alpine origin, RPM source RPM) that advisories are written against.
	Source        string `json:"source,omitempty"`
	SourceVersion string `json:"sourceVersion,omitempty"`
	// Ecosystem is the OSV ecosystem ("Debian:12", "Alpine:v3.20").
	Ecosystem string `json:"ecosystem"`
	// DB is the package database it came from (dpkg, apk, rpm).
	DB string `json:"db"`
}

// Vulnerability is a known vulnerability affecting an installed package.
type Vulnerability struct {
	ID       string   `json:"id"`
	Aliases  []string `json:"aliases,omitempty"`
	Package  string   `json:"package"`
	Version  string   `json:"version"`
	FixedIn  string   `json:"fixedIn,omitempty"`
	Severity Severity `json:"severity"`
	Summary  string   `json:"summary,omitempty"`
}

// Signature is the outcome of verifying an image's signatures against the
// tenant's keys.
type Signature struct {
	// Verified is true when a signature by one of the keys covers Digest.
	Verified bool `json:"verified"`
	// Key names the key that verified it.
	Key string `json:"key,omitempty"`
	// Reason says why verification failed.
	Reason string `json:"reason,omitempty"`
}

type imageCheck struct {
	Check
	// skip, if set, returns why the check cannot run on this input.
	skip func(e *Engine, in *ImageInput) string
	eval func(e *Engine, in *ImageInput, add func(detail, path string))
}

// Image judges an image: every built-in image check, then the operator's
// image rules.
func (e *Engine) Image(in ImageInput) Decision {
	d := Decision{
		Kind:    KindImage,
		Tenant:  in.Tenant.Metadata.Name,
		Subject: in.Ref,
		Digest:  in.Digest,
		Time:    in.Now,
	}
	d.BlockSeverity = blockSeverity(&in.Tenant, in.BlockSeverity)
	for _, c := range e.imageChecks {
		if c.skip != nil {
			if why := c.skip(e, &in); why != "" {
				d.Skipped = append(d.Skipped, c.ID+": "+why)
				continue
			}
		}
		d.Checked = append(d.Checked, c.ID)
		c.eval(e, &in, func(detail, path string) { d.judge(c.finding(detail, path), c.Blocks) })
	}
	e.vulnerabilities(&d, &in)
	for _, g := range in.Facts.Gaps {
		d.Notes = append(d.Notes, Finding{
			ID: "RUNG-image-inventory", Title: "Package inventory is incomplete", Severity: SeverityUnknown,
			Detail: g, Fix: "see the detail; packages outside the inventory are not matched against the vulnerability database",
		})
	}
	e.evalRules(&d, KindImage, imageVars(&in))
	d.finish()
	return d
}

// vulnerabilityCheck is CIS-4.4; its findings carry each vulnerability's own
// severity.
func vulnerabilityCheck() Check {
	return Check{
		ID: "CIS-4.4", Title: "Images are scanned and rebuilt with security patches", Severity: SeverityHigh,
		Fix:    "rebuild the image with the fixed package versions",
		Blocks: BlockAtSeverity,
	}
}

func (e *Engine) vulnerabilities(d *Decision, in *ImageInput) {
	c := vulnerabilityCheck()
	if !in.Facts.VulnDB {
		d.Skipped = append(d.Skipped, c.ID+": no vulnerability database (import one with rung vulndb import)")
		for _, u := range in.Facts.Unreadable {
			d.Notes = append(d.Notes, Finding{
				ID: "RUNG-image-inventory", Title: "Package database unreadable", Severity: SeverityUnknown,
				Detail: u, Fix: "rebuild the image so that its package database is intact; with a vulnerability database imported this image is refused",
			})
		}
		return
	}
	d.Checked = append(d.Checked, c.ID)
	for _, u := range in.Facts.Unreadable {
		f := c.finding("package database unreadable, so the image's packages can't be checked: "+u, "")
		f.Fix = "rebuild the image so that its package database is intact (rpm --rebuilddb, or reinstall the packages)"
		d.Findings = append(d.Findings, f)
	}
	for _, v := range in.Facts.Vulnerabilities {
		f := c.finding(vulnDetail(v), "")
		f.Severity = v.Severity
		f.Advisory = v.ID
		if v.FixedIn != "" {
			f.Fix = fmt.Sprintf("upgrade %s to %s or later", v.Package, v.FixedIn)
		} else {
			f.Fix = fmt.Sprintf("no fixed version of %s is known; remove the package or accept the risk in the tenant's blocking severity", v.Package)
		}
		d.judge(f, c.Blocks)
	}
}

func vulnDetail(v Vulnerability) string {
	s := fmt.Sprintf("%s in %s %s", v.ID, v.Package, v.Version)
	if len(v.Aliases) > 0 {
		s += " (" + strings.Join(v.Aliases, ", ") + ")"
	}
	if v.Summary != "" {
		s += ": " + v.Summary
	}
	return s
}

func builtinImageChecks() []imageCheck {
	return []imageCheck{
		{Check: Check{
			ID: "RUNG-image-registry", Title: "The image comes from an allowed registry", Severity: SeverityHigh,
			Fix:    "push the image to one of the tenant's registries (spec.images.registries)",
			Blocks: BlockAlways,
		}, skip: func(_ *Engine, in *ImageInput) string {
			if len(in.Tenant.Spec.Images.Registries) == 0 {
				return "the tenant allows any registry"
			}
			return ""
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			if registryAllowed(in.Ref, in.Repository, in.Tenant.Spec.Images.Registries) {
				return
			}
			where := in.Repository
			if where == "" {
				where = in.Ref + " (not a registry reference)"
			}
			add(fmt.Sprintf("%s is not under %s", where, strings.Join(in.Tenant.Spec.Images.Registries, ", ")), "")
		}},
		{Check: Check{
			ID: "RUNG-image-signature", Title: "The image is signed by the tenant's CI key", Severity: SeverityCritical,
			Fix:    "sign the image digest in CI with `rung image sign --key` using a key listed in spec.images.signedBy",
			Refs:   []string{"CIS-4.5", "CIS-4.12"},
			Blocks: BlockAlways,
		}, skip: func(_ *Engine, in *ImageInput) string {
			if len(in.Tenant.Spec.Images.SignedBy) == 0 {
				return "the tenant requires no signature"
			}
			return ""
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			switch s := in.Signature; {
			case s == nil:
				add("signature not verified", "")
			case !s.Verified:
				add(cmp.Or(s.Reason, "no valid signature"), "")
			}
		}},
		{Check: Check{
			ID: "CIS-4.1", Title: "A non-root user is created and used", Severity: SeverityHigh,
			Fix:    "set USER to a numeric non-zero uid (USER 65532:65532; rung image pack --user 1000)",
			Refs:   []string{"PSS-restricted-running-as-non-root"},
			Blocks: BlockAtSeverity,
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			u := in.Facts.User
			name, _, _ := strings.Cut(u, ":")
			switch {
			case u == "":
				add("no USER: the image runs as root", "")
			case name == "root" || name == "0":
				add(fmt.Sprintf("USER %s is root", u), "")
			}
		}},
		{Check: Check{
			ID: "CIS-5.8", Title: "Privileged ports are not used", Severity: SeverityMedium,
			Fix:    "listen on a port of 1024 or above and update EXPOSE (replicas have no CAP_NET_BIND_SERVICE)",
			Blocks: BlockAtSeverity,
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			for _, p := range in.Facts.ExposedPorts {
				num, _, _ := strings.Cut(p, "/")
				lo, _, _ := strings.Cut(num, "-")
				if n, err := strconv.Atoi(lo); err == nil && n < 1024 {
					add("EXPOSE "+p, "")
				}
			}
		}},
		{Check: Check{
			ID: "CIS-4.8", Title: "setuid and setgid permissions are removed", Severity: SeverityMedium,
			Fix:    "none needed: rung strips the bits when it unpacks the image (and no_new_privs ignores them); chmod u-s,g-s FILE in the image build silences this note",
			Blocks: BlockNever,
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			for _, f := range in.Facts.Files {
				if !f.Mode.IsRegular() {
					continue // directories keep nothing; special files are not created
				}
				var bits []string
				if f.Mode&fs.ModeSetuid != 0 {
					bits = append(bits, "setuid")
				}
				if f.Mode&fs.ModeSetgid != 0 {
					bits = append(bits, "setgid")
				}
				if len(bits) > 0 {
					add(fmt.Sprintf("%s %s (%s, owner %d:%d): stripped when unpacked", strings.Join(bits, "+"), f.Path, f.Mode, f.UID, f.GID), f.Path)
				}
			}
		}},
		{Check: Check{
			ID: "RUNG-image-special-files", Title: "Device nodes and fifos in the image are not created", Severity: SeverityLow,
			Fix:    "none needed: every replica gets the runtime's own /dev; leaving /dev empty in the image silences this note",
			Blocks: BlockNever,
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			for _, f := range in.Facts.Files {
				if f.Mode&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
					add(fmt.Sprintf("%s %s: not created when unpacked", specialKind(f.Mode), f.Path), f.Path)
				}
			}
		}},
		{Check: Check{
			ID: "RUNG-image-world-writable", Title: "No world-writable files or directories", Severity: SeverityMedium,
			Fix:    "remove write permission for others (chmod o-w), or set the sticky bit on shared directories",
			Blocks: BlockAtSeverity,
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			for _, f := range in.Facts.Files {
				if !f.Mode.IsRegular() && !f.Mode.IsDir() || f.Mode.Perm()&0o002 == 0 {
					continue // links, and device nodes and fifos, which are not created
				}
				if f.Mode.IsDir() && f.Mode&fs.ModeSticky != 0 {
					continue // /tmp and the like
				}
				add(fmt.Sprintf("%s is world-writable (%s)", f.Path, f.Mode), f.Path)
			}
		}},
		{Check: Check{
			ID: "CIS-4.10", Title: "Secrets are not stored in the image", Severity: SeverityHigh,
			Fix:    "remove the file from every layer (build with secrets mounted, not copied) and rotate the secret",
			Blocks: BlockAtSeverity,
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			for _, f := range in.Facts.Files {
				if f.Secret != "" {
					add(fmt.Sprintf("%s: %s", f.Path, f.Secret), f.Path)
				}
			}
		}},
		{Check: Check{
			ID: "CIS-4.6", Title: "A HEALTHCHECK is defined", Severity: SeverityLow,
			Fix:    "add a HEALTHCHECK instruction to the image (rung image pack --healthcheck CMD), or set spec.healthcheck on the workload",
			Blocks: BlockAtSeverity,
		}, eval: func(_ *Engine, in *ImageInput, add func(string, string)) {
			if !in.Facts.Healthcheck {
				add("no HEALTHCHECK in the image config", "")
			}
		}},
		{Check: Check{
			ID: "RUNG-image-age", Title: "The image was built recently", Severity: SeverityLow,
			Fix:    "rebuild the image on a current base to pick up security updates",
			Blocks: BlockAlways,
		}, skip: func(_ *Engine, in *ImageInput) string {
			if c := in.Facts.Created; c.IsZero() || c.Unix() <= 0 {
				return "the image has no created time (or a reproducible-build epoch)"
			}
			return ""
		}, eval: func(e *Engine, in *ImageInput, add func(string, string)) {
			age := in.Now.Sub(in.Facts.Created)
			if age > e.maxAge {
				add(fmt.Sprintf("created %s, %d days ago (limit %d days)", in.Facts.Created.UTC().Format(time.DateOnly),
					int(age.Hours()/24), int(e.maxAge.Hours()/24)), "")
			}
		}},
	}
}

// specialKind names the type of a device node, fifo or socket.
func specialKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	}
	return "socket"
}

// MarshalJSON adds "perm", the mode as ls shows it ("-rwsr-xr-x"), to the
// numeric mode, for people reading -o json.
func (f File) MarshalJSON() ([]byte, error) {
	type plain File
	return json.Marshal(struct {
		plain
		Perm string `json:"perm"`
	}{plain(f), f.Mode.String()})
}
