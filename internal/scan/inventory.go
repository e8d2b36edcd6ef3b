package scan

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"strings"

	"rung.dev/rung/internal/policy"
)

// Package databases, as named in policy.Package.DB.
const (
	DBDpkg = "dpkg"
	DBApk  = "apk"
	DBRPM  = "rpm"
)

// maxLine is the longest line the package database parsers accept (dpkg
// descriptions and apk dependency lists can be long).
const maxLine = 1 << 20

// Distro is an image's distribution, from /etc/os-release.
type Distro struct {
	ID        string // "debian", "ubuntu", "alpine", "rhel", "azurelinux"
	VersionID string // "12", "22.04", "3.20.3", "9.4"
	Codename  string // VERSION_CODENAME
	Pretty    string // PRETTY_NAME
}

// String is "ID VERSION_ID".
func (d Distro) String() string { return strings.TrimSpace(d.ID + " " + d.VersionID) }

// ParseOSRelease reads an os-release(5) file.
func ParseOSRelease(r io.Reader) (Distro, error) {
	var d Distro
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			d.ID = strings.ToLower(v)
		case "VERSION_ID":
			d.VersionID = v
		case "VERSION_CODENAME":
			d.Codename = v
		case "PRETTY_NAME":
			d.Pretty = v
		}
	}
	if err := sc.Err(); err != nil {
		return Distro{}, fmt.Errorf("os-release: %w", err)
	}
	return d, nil
}

// Ecosystem returns the OSV ecosystem of d's packages ("Debian:12",
// "Ubuntu:22.04:LTS" is written "Ubuntu:22.04", "Alpine:v3.20",
// "Red Hat", "AlmaLinux:9", "Rocky Linux:9", "Azure Linux:3",
// "Mariner:2.0"), or "" when unknown.
func (d Distro) Ecosystem() string {
	major, minor := d.VersionID, ""
	if i := strings.IndexByte(d.VersionID, '.'); i >= 0 {
		major, minor = d.VersionID[:i], d.VersionID[i+1:]
		if j := strings.IndexByte(minor, '.'); j >= 0 {
			minor = minor[:j]
		}
	}
	switch d.ID {
	case "debian":
		if major == "" {
			return "Debian"
		}
		return "Debian:" + major
	case "ubuntu":
		return "Ubuntu:" + d.VersionID
	case "alpine":
		if minor == "" {
			return "Alpine"
		}
		return "Alpine:v" + major + "." + minor
	case "rhel":
		return "Red Hat"
	case "almalinux":
		return "AlmaLinux:" + major
	case "rocky":
		return "Rocky Linux:" + major
	case "azurelinux":
		return "Azure Linux:" + major
	case "mariner":
		return "Mariner:" + major + "." + cmp.Or(minor, "0")
	}
	return ""
}

// ParseDpkgStatus reads a dpkg status file (/var/lib/dpkg/status, or one
// file of /var/lib/dpkg/status.d as distroless images ship) and returns
// the installed packages: stanzas whose Status is "install ok installed"
// (status.d stanzas have no Status and count as installed).
func ParseDpkgStatus(r io.Reader, ecosystem string) ([]policy.Package, error) {
	var out []policy.Package
	err := stanzas(r, func(f map[string]string) {
		if st, ok := f["Status"]; ok && !strings.HasSuffix(st, " installed") {
			return
		}
		if f["Package"] == "" || f["Version"] == "" {
			return
		}
		p := policy.Package{Name: f["Package"], Version: f["Version"], Ecosystem: ecosystem, DB: DBDpkg}
		// "Source: name" or "Source: name (version)" for binNMUs and
		// packages whose version differs from the source's.
		if src := f["Source"]; src != "" {
			name, ver, _ := strings.Cut(src, " ")
			p.Source = name
			p.SourceVersion = strings.Trim(strings.TrimSpace(ver), "()")
		}
		if p.Source == "" {
			p.Source = p.Name
		}
		if p.SourceVersion == "" {
			p.SourceVersion = p.Version
		}
		out = append(out, p)
	})
	if err != nil {
		return nil, fmt.Errorf("dpkg status: %w", err)
	}
	return out, nil
}

// stanzas calls fn for each RFC 822-style stanza of a Debian control file.
// Continuation lines are skipped: no field rung reads spans lines.
func stanzas(r io.Reader, fn func(map[string]string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	f := map[string]string{}
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			if len(f) > 0 {
				fn(f)
				f = map[string]string{}
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		f[string(k)] = string(bytes.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(f) > 0 {
		fn(f)
	}
	return nil
}

// ParseApkInstalled reads Alpine's /lib/apk/db/installed: one record per
// package, "P:" name, "V:" version, "o:" origin (the source package that
// Alpine's advisories name).
func ParseApkInstalled(r io.Reader, ecosystem string) ([]policy.Package, error) {
	var (
		out []policy.Package
		cur policy.Package
	)
	flush := func() {
		if cur.Name != "" && cur.Version != "" {
			if cur.Source == "" {
				cur.Source = cur.Name
			}
			cur.SourceVersion = cur.Version
			cur.Ecosystem, cur.DB = ecosystem, DBApk
			out = append(out, cur)
		}
		cur = policy.Package{}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if len(line) < 2 || line[1] != ':' {
			continue
		}
		switch v := line[2:]; line[0] {
		case 'P':
			cur.Name = v
		case 'V':
			cur.Version = v
		case 'o':
			cur.Source = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("apk installed: %w", err)
	}
	flush()
	return out, nil
}

// ParseRPMManifest reads an RPM package listing in the format of Azure
// Linux and CBL-Mariner's /var/lib/rpmmanifest/container-manifest-2, which
// is `rpm -qa --qf` output with tab-separated fields:
//
//	NAME VERSION-RELEASE INSTALLTIME BUILDTIME VENDOR EPOCH SOURCERPM ARCH ...
//
// (EPOCH is "(none)" or a number). The same format is accepted from
// /var/lib/rung/rpm-manifest, which an image build can write with
//
//	rpm -qa --qf '%{NAME}\t%{VERSION}-%{RELEASE}\t%{INSTALLTIME}\t%{BUILDTIME}\t%{VENDOR}\t%{EPOCH}\t%{SOURCERPM}\t%{ARCH}\n'
//
// for images that ship no rpm database (Inspect prefers the database).
// The version is returned as [EPOCH:]VERSION-RELEASE and the source is the
// source RPM's name.
func ParseRPMManifest(r io.Reader, ecosystem string) ([]policy.Package, error) {
	var out []policy.Package
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 2 || f[0] == "" || f[1] == "" {
			return nil, fmt.Errorf("rpm manifest line %d: want NAME<TAB>VERSION-RELEASE…", n)
		}
		p := policy.Package{Name: f[0], Version: f[1], Ecosystem: ecosystem, DB: DBRPM}
		if len(f) > 5 && f[5] != "" && f[5] != "(none)" && f[5] != "0" {
			p.Version = f[5] + ":" + p.Version
		}
		p.Source, p.SourceVersion = p.Name, p.Version
		if len(f) > 6 {
			if name, ok := srpmName(f[6]); ok {
				p.Source = name
			}
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("rpm manifest: %w", err)
	}
	return out, nil
}

// srpmName returns NAME of "NAME-VERSION-RELEASE.src.rpm".
func srpmName(srpm string) (string, bool) {
	s, ok := strings.CutSuffix(srpm, ".src.rpm")
	if !ok {
		return "", false
	}
	for range 2 {
		i := strings.LastIndexByte(s, '-')
		if i <= 0 {
			return "", false
		}
		s = s[:i]
	}
	return s, true
}
