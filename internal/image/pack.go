package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Defaults for images made by Pack.
const (
	DefaultUser = "65534:65534" // nobody:nogroup
	DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// PackOptions configures the image Pack makes.
type PackOptions struct {
	Entrypoint []string
	Cmd        []string
	// User is the numeric UID[:GID] the image runs as; default DefaultUser.
	// Names are refused: the node does not read the image's /etc/passwd.
	User       string
	Env        []string // KEY=VALUE; default DefaultPath
	WorkingDir string
	// Healthcheck is the config's HEALTHCHECK test in Docker's form:
	// ["CMD", exe, args…], ["CMD-SHELL", command] or ["NONE"]
	// (ParseHealthcheck makes one from a Dockerfile's HEALTHCHECK CMD).
	Healthcheck []string
	// HealthInterval, HealthTimeout, HealthStartPeriod and HealthRetries
	// are the HEALTHCHECK's options; zero means the runtime's default.
	HealthInterval    time.Duration
	HealthTimeout     time.Duration
	HealthStartPeriod time.Duration
	HealthRetries     int
	// Created is recorded in the config and as every entry's mtime; zero
	// means the Unix epoch, so that the same directory always packs to the
	// same digest.
	Created time.Time
	// Stats, if set, is filled in with what Pack left out or changed.
	Stats *PackStats
}

// PackStats reports what Pack did not copy as it was: the same things
// Unpack leaves out of a root filesystem, so that packing and running
// agree.
type PackStats struct {
	// Skipped are device nodes, fifos and sockets, with their type
	// ("dev/null (character device)"): a replica gets its runtime's /dev.
	Skipped []string
	// Stripped are files and directories whose setuid/setgid bits were
	// removed (CIS Docker Benchmark 4.8).
	Stripped []string
}

// BusyboxHealthcheck is the HEALTHCHECK of the project's busybox image.
func BusyboxHealthcheck() []string { return []string{"CMD", "/bin/true"} }

// Pack makes a one-layer OCI image from dir, stores it as tag (NAME[:TAG])
// and returns its manifest digest. The layer is deterministic: entries in
// lexical order, mtimes set to opts.Created, owner 0:0, no user names or
// extended attributes; hard links within dir are kept, and long names are
// written as PAX records. Symbolic links are stored as links, never
// followed, wherever they point. As Unpack does, device nodes, fifos and
// sockets are left out and setuid/setgid bits are removed, each listed in
// opts.Stats. Bad options are refused with ErrInvalidConfig before
// anything is read.
func (s *Store) Pack(ctx context.Context, dir, tag string, opts PackOptions) (v1.Hash, error) {
	src, err := parseRef(tag)
	if err != nil {
		return v1.Hash{}, err
	}
	if src.kind != fromStore || src.tag == "" {
		return v1.Hash{}, fmt.Errorf("pack %s: %w: want NAME[:TAG]", dir, ErrInvalidRef)
	}
	if err := opts.validate(); err != nil {
		return v1.Hash{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	st := opts.Stats
	if st == nil {
		st = &PackStats{}
	}
	created := opts.Created.UTC().Truncate(time.Second)
	if opts.Created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	f, err := os.CreateTemp(s.tmp, "pack-*.tar.gz")
	if err != nil {
		return v1.Hash{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	defer os.Remove(f.Name())
	err = writeLayer(ctx, f, dir, created, st)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return v1.Hash{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	layer, err := tarball.LayerFromFile(f.Name(), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	img, err := packImage(layer, created, opts)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	unlock, err := s.lockWrite(ctx)
	if err != nil {
		return v1.Hash{}, err
	}
	defer unlock()
	d, err := s.writeImage(ctx, img, nil)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	ref := Ref{Name: src.name, Tag: src.tag, Digest: d.Digest}
	if err := s.setRefs([]Ref{ref}, []v1.Descriptor{d}); err != nil {
		return v1.Hash{}, fmt.Errorf("pack %s: %w", dir, err)
	}
	return d.Digest, nil
}

// packImage wraps layer in an OCI image with the config from opts.
func packImage(layer v1.Layer, created time.Time, opts PackOptions) (v1.Image, error) {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "rung image pack"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	plat := defaultPlatform()
	cf.OS, cf.Architecture = plat.OS, plat.Architecture
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: opts.Entrypoint,
		Cmd:        opts.Cmd,
		User:       cmpOr(opts.User, DefaultUser),
		Env:        opts.Env,
		WorkingDir: opts.WorkingDir,
	}
	if len(opts.Healthcheck) > 0 {
		cf.Config.Healthcheck = &v1.HealthConfig{
			Test: opts.Healthcheck, Interval: opts.HealthInterval, Timeout: opts.HealthTimeout,
			StartPeriod: opts.HealthStartPeriod, Retries: opts.HealthRetries,
		}
	}
	if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{DefaultPath}
	}
	return mutate.ConfigFile(img, cf)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// writeLayer writes dir as a gzipped tar to w, noting in st what it left
// out or changed.
func writeLayer(ctx context.Context, w io.Writer, dir string, mtime time.Time, st *PackStats) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	err = fs.WalkDir(root.FS(), ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		fi, err := root.Lstat(p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    p,
			Mode:    tarMode(fi.Mode()),
			ModTime: mtime,
		}
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		case mode&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = root.Readlink(p); err != nil {
				return err
			}
		case mode.IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if first, ok := links[k]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					links[k] = p
				}
			}
		case mode&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
			st.Skipped = append(st.Skipped, p+" ("+specialType(mode)+")")
			return nil
		default:
			return fmt.Errorf("%s: %w (%s)", p, ErrUnsupported, mode.Type())
		}
		if hdr.Mode&0o6000 != 0 && (hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir) {
			hdr.Mode &^= 0o6000 // a hard link shares its first name's entry
			st.Stripped = append(st.Stripped, p)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := openRegular(root, p, fi)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(tw, io.LimitReader(f, hdr.Size))
		if err == nil && n != hdr.Size {
			err = fmt.Errorf("%s: %w", p, errChanged)
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// errChanged: a file was replaced between looking at it and reading it.
var errChanged = errors.New("changed while packing")

// openRegular opens p, which was lstat'ed as the regular file fi, and
// makes sure it still is that file: a directory someone else can write to
// could swap in a fifo (an open would block forever) or a link elsewhere.
func openRegular(root *os.Root, p string, fi fs.FileInfo) (*os.File, error) {
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	now, err := f.Stat()
	if err == nil && (!now.Mode().IsRegular() || !os.SameFile(fi, now)) {
		err = fmt.Errorf("%s: %w", p, errChanged)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// tarMode converts permission and special bits to tar's c_ISUID etc.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// BusyboxPath is where Debian's busybox-static installs the binary that
// BusyboxRoot copies.
const BusyboxPath = "/bin/busybox"

// busyboxApplets are the commands BusyboxRoot links to busybox.
func busyboxApplets() []string {
	return []string{
		"[", "cat", "chmod", "cp", "date", "dd", "df", "echo", "env", "false",
		"grep", "head", "hostname", "id", "kill", "ln", "ls", "mkdir", "mount",
		"mv", "nproc", "ps", "pwd", "readlink", "rm", "sh", "sleep", "stat",
		"tail", "test", "touch", "true", "umount", "uname", "unshare", "wc",
		"whoami", "yes",
	}
}

// BusyboxRoot lays out a minimal root filesystem in dir (created if
// missing): /bin/busybox copied from BusyboxPath with symlinks for common
// applets, /tmp (1777), /proc, /sys, /dev, /root, and /etc/passwd and
// /etc/group with root and nobody.
func BusyboxRoot(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("busybox root: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("busybox root: %w", err)
	}
	defer root.Close()
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("busybox root: %w", err)
	}
	dirs := []struct {
		name string
		mode fs.FileMode
	}{
		{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o555},
		{"sys", 0o555}, {"root", 0o700}, {"tmp", 0o777 | fs.ModeSticky},
	}
	for _, d := range dirs {
		if err := root.Mkdir(d.name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("busybox root: %w", err)
		}
		if err := root.Chmod(d.name, d.mode); err != nil {
			return fmt.Errorf("busybox root: %w", err)
		}
	}
	files := []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{"bin/busybox", bin, 0o755},
		{"etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644},
		{"etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644},
	}
	for _, f := range files {
		if err := root.WriteFile(f.name, f.data, f.mode); err != nil {
			return fmt.Errorf("busybox root: %w", err)
		}
		if err := root.Chmod(f.name, f.mode); err != nil {
			return fmt.Errorf("busybox root: %w", err)
		}
	}
	for _, a := range busyboxApplets() {
		p := filepath.Join("bin", a)
		if err := root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("busybox root: %w", err)
		}
		if err := root.Symlink("busybox", p); err != nil {
			return fmt.Errorf("busybox root: %w", err)
		}
	}
	return nil
}
