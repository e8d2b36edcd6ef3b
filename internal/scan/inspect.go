// Package scan inspects OCI images for admission: the config (user, ports,
// healthcheck, age), the files of every layer (setuid/setgid,
// world-writable, secret-looking, device nodes and fifos), and the OS package inventory (dpkg, apk,
// rpm listings), matched against an offline OSV database with each
// ecosystem's version rules.
//
// Layers are read as tar streams from go-containerregistry and never
// extracted to the host. Inspect gathers facts; internal/policy judges
// them.
package scan

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"rung.dev/rung/internal/policy"
)

// Errors callers can check with errors.Is.
var (
	// ErrTooLarge is returned when the layers exceed Options.MaxBytes.
	ErrTooLarge = errors.New("image too large to inspect")
	// ErrInvalidLayer is returned for a layer that is not a tar stream.
	ErrInvalidLayer = errors.New("invalid layer")
)

// Limits of an inspection.
const (
	// DefaultMaxBytes caps the uncompressed bytes read from all layers.
	DefaultMaxBytes = 16 << 30
	// maxCapture caps one captured package database file, and
	// maxCaptureTotal all of them together (they are held in memory until
	// the inventory is read).
	maxCapture      = 256 << 20
	maxCaptureTotal = 1 << 30
	// maxSecretScan is the largest file whose content is searched for
	// private keys and cloud credentials.
	maxSecretScan = 256 << 10
)

// Options configure Inspect.
type Options struct {
	// MaxBytes caps the uncompressed bytes read from all layers; zero means
	// DefaultMaxBytes.
	MaxBytes int64
	// Advisories, if set, is the vulnerability database the inventory is
	// matched against.
	Advisories Source
}

// Result is what Inspect found.
type Result struct {
	Digest v1.Hash
	Distro Distro
	Facts  policy.ImageFacts
}

// Inspect reads img's config and layers and returns its facts.
func Inspect(ctx context.Context, img v1.Image, opts Options) (*Result, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("inspect: digest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: config: %w", digest, err)
	}
	res := &Result{Digest: digest}
	f := &res.Facts
	f.Created = cfg.Created.Time
	f.User = cfg.Config.User
	for p := range cfg.Config.ExposedPorts {
		f.ExposedPorts = append(f.ExposedPorts, p)
	}
	slices.Sort(f.ExposedPorts)
	if hc := cfg.Config.Healthcheck; hc != nil && len(hc.Test) > 0 && hc.Test[0] != "NONE" {
		f.Healthcheck = true
	}
	f.Env = cfg.Config.Env
	f.Labels = cfg.Config.Labels

	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: layers: %w", digest, err)
	}
	w := newWalker(opts.MaxBytes)
	for i, l := range layers {
		if err := w.layer(ctx, i, l); err != nil {
			return nil, fmt.Errorf("inspect %s: %w", digest, err)
		}
	}
	f.Files = w.files()
	res.Distro, f.Packages, f.Gaps, f.Unreadable, err = w.inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", digest, err)
	}
	f.OS = res.Distro.String()
	if opts.Advisories != nil {
		vulns, err := Match(ctx, opts.Advisories, f.Packages)
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", digest, err)
		}
		f.Vulnerabilities, f.VulnDB = vulns, true
	}
	return res, nil
}

// entry is a notable file in the filesystem built so far.
type entry struct {
	layer int
	file  policy.File
}

// secret is a secret-looking file seen in some layer.
type secret struct {
	layer   int
	file    policy.File
	removed bool // deleted or replaced by a later layer
}

// walker applies layers in order, keeping only what inspection needs:
// notable files, secrets (also those removed later, since they stay in the
// image's blobs), and the contents of package databases.
type walker struct {
	budget   int64
	held     int64 // bytes of package databases held in memory
	notable  map[string]entry
	secrets  map[string]*secret
	captured map[string]capture
}

type capture struct {
	layer int
	data  []byte
	link  string // symlink target, for os-release
}

func newWalker(budget int64) *walker {
	return &walker{budget: budget, notable: map[string]entry{}, secrets: map[string]*secret{}, captured: map[string]capture{}}
}

func (w *walker) layer(ctx context.Context, i int, l v1.Layer) error {
	d, err := l.Digest()
	if err != nil {
		return fmt.Errorf("layer %d: %w", i, err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	defer rc.Close()
	tr := tar.NewReader(&budgetReader{r: rc, n: &w.budget})
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return fmt.Errorf("layer %s: %w", d, err)
			}
			return fmt.Errorf("layer %s: %w: %v", d, ErrInvalidLayer, err)
		}
		if err := w.entry(i, hdr, tr); err != nil {
			return fmt.Errorf("layer %s: %s: %w", d, hdr.Name, err)
		}
	}
}

// budgetReader fails with ErrTooLarge once n bytes have been read in all.
type budgetReader struct {
	r io.Reader
	n *int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if *b.n <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > *b.n {
		p = p[:*b.n]
	}
	n, err := b.r.Read(p)
	*b.n -= int64(n)
	return n, err
}

func (w *walker) entry(layer int, hdr *tar.Header, r io.Reader) error {
	name := path.Clean("/" + hdr.Name)
	dir, base := path.Split(name)
	if base == ".wh..wh..opq" {
		w.remove(layer, path.Clean(dir), false)
		return nil
	}
	if target, ok := strings.CutPrefix(base, ".wh."); ok {
		w.remove(layer, path.Join(dir, target), true)
		return nil
	}
	// A new entry replaces whatever lower layers had at name.
	w.remove(layer, name, true)

	mode := hdr.FileInfo().Mode()
	file := policy.File{Path: name, Mode: mode, UID: hdr.Uid, GID: hdr.Gid}
	isReg := hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeLink
	special := hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock || hdr.Typeflag == tar.TypeFifo
	if (isReg && mode&(fs.ModeSetuid|fs.ModeSetgid) != 0) || special ||
		(mode&fs.ModeSymlink == 0 && mode.Perm()&0o002 != 0) {
		w.notable[name] = entry{layer: layer, file: file}
	}
	if hdr.Typeflag == tar.TypeSymlink && isOSRelease(name) {
		w.captured[name] = capture{layer: layer, link: hdr.Linkname}
		return nil
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	if wantCapture(name) {
		if hdr.Size > maxCapture {
			return fmt.Errorf("%w: package database %s is %d bytes", ErrTooLarge, name, hdr.Size)
		}
		if w.held += hdr.Size; w.held > maxCaptureTotal {
			return fmt.Errorf("%w: package databases over %d bytes in all", ErrTooLarge, int64(maxCaptureTotal))
		}
		data, err := io.ReadAll(io.LimitReader(r, maxCapture))
		if err != nil {
			return err
		}
		w.captured[name] = capture{layer: layer, data: data}
		return nil
	}
	var head []byte
	if hdr.Size <= maxSecretScan && !skipContent(name) {
		b, err := io.ReadAll(io.LimitReader(r, maxSecretScan))
		if err != nil {
			return err
		}
		head = b
	}
	if why := secretReason(name, head); why != "" {
		file.Secret = why
		w.secrets[name] = &secret{layer: layer, file: file}
	}
	return nil
}

// remove deletes name (and, when subtree, everything under it; for an
// opaque directory only what is under it) as lower layers left it.
func (w *walker) remove(layer int, name string, self bool) {
	under := func(p string) bool {
		return (self && p == name) || strings.HasPrefix(p, strings.TrimSuffix(name, "/")+"/")
	}
	for p, e := range w.notable {
		if e.layer < layer && under(p) {
			delete(w.notable, p)
		}
	}
	for p, s := range w.secrets {
		if s.layer < layer && under(p) {
			s.removed = true
		}
	}
	for p, c := range w.captured {
		if c.layer < layer && under(p) {
			delete(w.captured, p)
		}
	}
}

func (w *walker) files() []policy.File {
	var out []policy.File
	for _, e := range w.notable {
		out = append(out, e.file)
	}
	for _, s := range w.secrets {
		f := s.file
		if s.removed {
			f.Secret += " (removed by a later layer, but still in the image's layers)"
		}
		if i := slices.IndexFunc(out, func(o policy.File) bool { return o.Path == f.Path }); i >= 0 && !s.removed {
			out[i].Secret = f.Secret
			continue
		}
		out = append(out, f)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Path < out[b].Path })
	return out
}

// Paths of the files Inspect reads the contents of.
const (
	dpkgStatus   = "/var/lib/dpkg/status"
	dpkgStatusD  = "/var/lib/dpkg/status.d/"
	apkInstalled = "/lib/apk/db/installed"
	rpmManifest  = "/var/lib/rpmmanifest/container-manifest-2"
	rungRPMList  = "/var/lib/rung/rpm-manifest"
)

// rpmDatabases are where rpm keeps its database: Berkeley DB (Packages),
// SQLite (rpmdb.sqlite) or NDB (Packages.db), in the classic directory or
// the one Fedora and openSUSE moved it to.
func rpmDatabases() []string {
	return []string{
		"/var/lib/rpm/Packages", "/var/lib/rpm/rpmdb.sqlite", "/var/lib/rpm/Packages.db",
		"/usr/lib/sysimage/rpm/Packages", "/usr/lib/sysimage/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/Packages.db",
	}
}

func isOSRelease(name string) bool { return name == "/etc/os-release" || name == "/usr/lib/os-release" }

func wantCapture(name string) bool {
	if isOSRelease(name) || name == dpkgStatus || name == apkInstalled || name == rpmManifest || name == rungRPMList {
		return true
	}
	if slices.Contains(rpmDatabases(), strings.TrimSuffix(name, "-wal")) {
		return true
	}
	if rest, ok := strings.CutPrefix(name, dpkgStatusD); ok && !strings.Contains(rest, "/") && !strings.HasSuffix(rest, ".md5sums") {
		return true
	}
	return false
}

// inventory parses the captured package databases. It returns the
// packages, the gaps (what was not inventoried, and why) and the package
// databases that are present but unreadable; the error is this machine's
// or the caller's (no temp dir, the parser couldn't start, ctx ended),
// never the image's.
func (w *walker) inventory(ctx context.Context) (d Distro, pkgs []policy.Package, gaps, unreadable []string, err error) {
	osr, ok := w.captured["/etc/os-release"]
	if !ok || osr.link != "" {
		osr, ok = w.captured["/usr/lib/os-release"]
	}
	if ok && osr.data != nil {
		d, _ = ParseOSRelease(bytes.NewReader(osr.data))
	}
	eco := d.Ecosystem()
	add := func(what string, ps []policy.Package, err error) {
		if err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s: %v", what, err))
			return
		}
		pkgs = append(pkgs, ps...)
	}
	if c, ok := w.captured[dpkgStatus]; ok {
		ps, err := ParseDpkgStatus(bytes.NewReader(c.data), eco)
		add(dpkgStatus, ps, err)
	}
	for _, name := range slices.Sorted(maps.Keys(w.captured)) {
		if strings.HasPrefix(name, dpkgStatusD) {
			ps, err := ParseDpkgStatus(bytes.NewReader(w.captured[name].data), eco)
			add(name, ps, err)
		}
	}
	if c, ok := w.captured[apkInstalled]; ok {
		ps, err := ParseApkInstalled(bytes.NewReader(c.data), eco)
		add(apkInstalled, ps, err)
	}
	// The rpm database is the truth when there is one; the listings are
	// for images that ship none (Azure Linux's distroless images).
	haveRPMDB := false
	for _, db := range rpmDatabases() {
		c, ok := w.captured[db]
		if !ok {
			continue
		}
		var wal io.Reader
		if l, ok := w.captured[db+"-wal"]; ok && len(l.data) > 0 {
			wal = bytes.NewReader(l.data)
		}
		ps, err := readRPM(ctx, path.Base(db), bytes.NewReader(c.data), wal, eco)
		if err != nil && !errors.Is(err, ErrUnreadableDB) {
			// This machine's fault (or the caller's context), not the image's.
			return Distro{}, nil, nil, nil, err
		}
		add(db, ps, err)
		haveRPMDB = true
	}
	if !haveRPMDB {
		for _, name := range []string{rpmManifest, rungRPMList} {
			if c, ok := w.captured[name]; ok {
				ps, err := ParseRPMManifest(bytes.NewReader(c.data), eco)
				add(name, ps, err)
			}
		}
	}
	pkgs = dedupe(pkgs)
	if len(pkgs) > 0 && eco == "" {
		gaps = append(gaps, fmt.Sprintf("distribution %q unknown (no /etc/os-release ID rung knows): %d packages not matched", d.String(), len(pkgs)))
	}
	return d, pkgs, gaps, unreadable, nil
}

// dedupe sorts packages and drops repeats: an image can carry the same
// rpm database twice (an old Packages beside the rpmdb.sqlite it was
// migrated to), and the same package of two architectures is one match.
func dedupe(pkgs []policy.Package) []policy.Package {
	key := func(p policy.Package) string { return p.DB + "\x00" + p.Name + "\x00" + p.Version }
	slices.SortFunc(pkgs, func(a, b policy.Package) int { return strings.Compare(key(a), key(b)) })
	return slices.CompactFunc(pkgs, func(a, b policy.Package) bool { return key(a) == key(b) })
}

// skipContent names files whose content is not searched for secrets:
// documentation and test suites ship sample keys on purpose. Their names
// are still checked.
func skipContent(name string) bool {
	for _, p := range []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/locale/"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, p := range []string{"/test/", "/tests/", "/testdata/"} {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}

var (
	privateKeyPEM = regexp.MustCompile(`-----BEGIN ((RSA|DSA|EC|OPENSSH|ENCRYPTED) )?PRIVATE KEY-----|-----BEGIN PGP PRIVATE KEY BLOCK-----`)
	awsKeyID      = regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b`)
)

// secretReason says why a file looks like a secret, from its path and the
// first bytes of its content (nil when not read), or "" when it does not.
func secretReason(name string, content []byte) string {
	base := path.Base(name)
	switch {
	case slices.Contains([]string{"id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk"}, base):
		return "SSH private key file"
	case base == ".env" || strings.HasPrefix(base, ".env.") && !slices.ContainsFunc([]string{".example", ".sample", ".template", ".dist"}, func(s string) bool { return strings.HasSuffix(base, s) }):
		return "dotenv file (environment secrets)"
	case strings.HasSuffix(name, "/.aws/credentials"):
		return "AWS credentials file"
	case base == "application_default_credentials.json" || strings.HasSuffix(name, "/.config/gcloud/credentials.db"):
		return "GCP credentials file"
	case slices.Contains([]string{".git-credentials", ".netrc", ".pgpass"}, base):
		return "credentials file (" + base + ")"
	}
	if content == nil {
		return ""
	}
	switch {
	case privateKeyPEM.Match(content):
		return "PEM private key"
	case bytes.Contains(content, []byte(`"service_account"`)) && bytes.Contains(content, []byte(`"private_key"`)):
		return "GCP service account key"
	case strings.HasSuffix(name, "/.docker/config.json") && bytes.Contains(content, []byte(`"auth"`)):
		return "Docker registry credentials"
	case isText(content) && awsKeyID.Match(content) && bytes.Contains(bytes.ToLower(content), []byte("secret")):
		return "AWS access key"
	}
	return ""
}

func isText(b []byte) bool { return !bytes.ContainsRune(b[:min(len(b), 512)], 0) }
