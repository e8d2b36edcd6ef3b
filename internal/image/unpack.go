package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
)

// Default limits for Unpack.
const (
	DefaultMaxLayerSize int64 = 2 << 30 // uncompressed bytes in one layer
	DefaultMaxTotalSize int64 = 8 << 30 // uncompressed bytes in all layers
	DefaultMaxEntries         = 1_000_000
)

// Bounds on names and on resolving them, so that no entry costs more than
// the kernel would spend on it: symlinks followed (ELOOP), bytes in a name
// (PATH_MAX), components in a name and components walked while resolving.
const (
	maxSymlinks = 40
	maxPathLen  = 4096
	maxDepth    = 256
	maxSteps    = 1024
)

// Whiteout names (OCI image spec, layer changesets).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// UnpackOptions configures Unpack. The zero value is usable.
type UnpackOptions struct {
	MaxLayerSize int64 // 0 means DefaultMaxLayerSize
	MaxTotalSize int64 // 0 means DefaultMaxTotalSize
	MaxEntries   int   // 0 means DefaultMaxEntries; counts entries of all layers

	// Chown maps an entry's uid and gid to the owner written on disk, so
	// that a rootfs is owned by a tenant's user-namespace range (see
	// ShiftIDs). A negative result refuses the entry with ErrBadOwner.
	// When nil, entries keep their own ids if the process is root, and
	// ownership is not changed otherwise.
	Chown func(uid, gid int) (int, int)

	// Progress, if set, sees each layer's compressed bytes as they are read.
	Progress Progress

	// Stats, if set, is filled in as Unpack goes.
	Stats *UnpackStats
}

// UnpackStats reports what Unpack did.
type UnpackStats struct {
	Layers   int
	Entries  int
	Bytes    int64    // uncompressed bytes of all layers
	Stripped []string // files and directories whose setuid/setgid bits were removed
	// Skipped are the device nodes and fifos not created, with their type
	// ("dev/null (character device)"), and hard links to them: the
	// runtime gives every replica its own /dev.
	Skipped []string
}

// ShiftIDs returns a Chown function for a user-namespace range: id n in
// the image becomes base+n on disk, for n < size. Ids outside the range
// are refused rather than folded into it.
func ShiftIDs(uidBase, gidBase, size int) func(uid, gid int) (int, int) {
	return func(uid, gid int) (int, int) {
		mu, mg := -1, -1
		if uid >= 0 && uid < size {
			mu = uidBase + uid
		}
		if gid >= 0 && gid < size {
			mg = gidBase + gid
		}
		return mu, mg
	}
}

// Unpack applies img's layers, in order, into dest (created if missing)
// and never writes outside it: every operation goes through an os.Root
// opened on dest, and entry names are checked before that.
//
// Entries whose names are absolute or contain ".." are refused, as are
// hard links whose targets are, and entries over the size and count
// limits; each refusal is an *UnpackError naming the layer and the entry
// and wrapping ErrUnsafePath, ErrTooLarge, ErrUnsupported or ErrBadOwner.
// Device nodes and fifos are not created (the runtime provides /dev): each
// removes what lower layers had at its name, as any entry does, and is
// listed in opts.Stats.Skipped. Symlinks are created as
// they are (an absolute target is resolved inside the container, later).
// When an entry's parent path goes through a symlink, the link is
// resolved as the container would see it, with dest as "/", so a link to
// /etc leads to dest/etc and never to the host's /etc. OCI whiteouts and
// opaque directories remove lower-layer content. Setuid and setgid bits
// are stripped (CIS Docker Benchmark 4.8) and counted in opts.Stats.
// Extended attributes (file capabilities included) are not applied. Each
// layer's digest and diff ID are verified once it has been read.
//
// On error dest is left partly written; the caller removes it.
func Unpack(ctx context.Context, img v1.Image, dest string, opts UnpackOptions) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer root.Close()
	u := newUnpacker(root, opts)
	if u.chownFn != nil {
		u.rootUID, u.rootGID = u.chownFn(0, 0)
		if u.rootUID < 0 || u.rootGID < 0 {
			return fmt.Errorf("unpack: %w: root maps to %d:%d", ErrBadOwner, u.rootUID, u.rootGID)
		}
		if err := root.Lchown(".", u.rootUID, u.rootGID); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
	}
	for _, l := range layers {
		if err := u.layer(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

// unpacker holds the state of one Unpack.
type unpacker struct {
	root    *os.Root
	opts    UnpackOptions
	chownFn func(uid, gid int) (int, int)
	chown   bool // change ownership at all
	rootUID int  // owner of directories the image does not list
	rootGID int
	stats   *UnpackStats
	total   int64             // uncompressed bytes so far, all layers
	entries int               // entries so far, all layers
	dirs    map[string]string // resolved parent directories; cleared on any change to links
	seen    map[string]bool   // paths written by the current layer
	skipped map[string]bool   // resolved paths of device nodes and fifos not created
}

func newUnpacker(root *os.Root, opts UnpackOptions) *unpacker {
	if opts.MaxLayerSize <= 0 {
		opts.MaxLayerSize = DefaultMaxLayerSize
	}
	if opts.MaxTotalSize <= 0 {
		opts.MaxTotalSize = DefaultMaxTotalSize
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	u := &unpacker{
		root:    root,
		opts:    opts,
		chownFn: opts.Chown,
		chown:   opts.Chown != nil || os.Geteuid() == 0,
		stats:   opts.Stats,
		dirs:    map[string]string{},
		skipped: map[string]bool{},
	}
	if u.stats == nil {
		u.stats = &UnpackStats{}
	}
	return u
}

// layer applies one layer.
func (u *unpacker) layer(ctx context.Context, l v1.Layer) error {
	digest, err := l.Digest()
	if err != nil {
		return fmt.Errorf("unpack: layer digest: %w", err)
	}
	fail := func(p string, err error) error { return &UnpackError{Layer: digest, Path: p, Err: err} }
	size, err := l.Size()
	if err != nil {
		size = -1
	}
	rc, err := l.Compressed()
	if err != nil {
		return fail("", err)
	}
	defer rc.Close()
	p := progressOrNop(u.opts.Progress)
	p.Update(digest, 0, size)
	zsum := sha256.New()
	m := &meter{ctx: ctx, r: rc, p: p, blob: digest, total: size}
	zr := bufio.NewReader(io.TeeReader(m, zsum))
	plain, closeDecomp, err := decompress(zr)
	if err != nil {
		return fail("", err)
	}
	defer closeDecomp()
	limit := min(u.opts.MaxLayerSize, u.opts.MaxTotalSize-u.total)
	lim := &limitReader{r: plain, max: limit}
	sum := sha256.New()
	tr := tar.NewReader(io.TeeReader(lim, sum))
	u.seen = map[string]bool{}
	u.dirs = map[string]string{}
	var data int64 // bytes of file content this layer writes
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail("", u.sizeErr(err))
		}
		if err := ctx.Err(); err != nil {
			return fail(hdr.Name, err)
		}
		u.entries++
		u.stats.Entries++
		if u.entries > u.opts.MaxEntries {
			return fail(hdr.Name, fmt.Errorf("%w: more than %d entries", ErrTooLarge, u.opts.MaxEntries))
		}
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeGNUSparse {
			// Count what the entry writes, not only what the stream
			// carries: a sparse file's holes take no stream bytes.
			data += hdr.Size
			if hdr.Size < 0 || data > limit {
				return fail(hdr.Name, u.sizeErr(errLimit))
			}
		}
		if err := u.entry(hdr, tr); err != nil {
			return fail(hdr.Name, u.sizeErr(err))
		}
	}
	// Read what follows the tar trailer so the digests cover the whole blob.
	if _, err := io.Copy(io.Discard, io.TeeReader(lim, sum)); err != nil {
		return fail("", u.sizeErr(err))
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fail("", err)
	}
	u.total += max(lim.n, data)
	u.stats.Bytes += lim.n
	u.stats.Layers++
	if err := checkSum(digest, zsum); err != nil {
		return fail("", err)
	}
	if diffID, err := l.DiffID(); err == nil {
		if err := checkSum(diffID, sum); err != nil {
			return fail("", fmt.Errorf("diff id: %w", err))
		}
	}
	p.Update(digest, m.done, m.done)
	return nil
}

// sizeErr turns the limit reader's error into an ErrTooLarge that says
// which limit was hit.
func (u *unpacker) sizeErr(err error) error {
	if !errors.Is(err, errLimit) {
		return err
	}
	if u.opts.MaxLayerSize <= u.opts.MaxTotalSize-u.total {
		return fmt.Errorf("%w: layer over %d bytes uncompressed", ErrTooLarge, u.opts.MaxLayerSize)
	}
	return fmt.Errorf("%w: image over %d bytes uncompressed", ErrTooLarge, u.opts.MaxTotalSize)
}

func checkSum(want v1.Hash, h hash.Hash) error {
	if want.Algorithm != "sha256" {
		return nil // nothing else is in use; go-containerregistry rejects it earlier
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("%w: content is sha256:%s", ErrDigestMismatch, got)
	}
	return nil
}

// decompress detects gzip and zstd by their magic numbers; anything else is
// taken to be a plain tar.
func decompress(r *bufio.Reader) (io.Reader, func(), error) {
	magic, _ := r.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// errLimit is returned by limitReader; sizeErr explains it.
var errLimit = errors.New("size limit reached")

// limitReader fails with errLimit once more than max bytes were read.
type limitReader struct {
	r      io.Reader
	n, max int64
}

func (l *limitReader) Read(b []byte) (int, error) {
	if l.n > l.max {
		return 0, errLimit
	}
	if rest := l.max - l.n + 1; int64(len(b)) > rest {
		b = b[:rest]
	}
	n, err := l.r.Read(b)
	l.n += int64(n)
	if l.n > l.max {
		return n, errLimit
	}
	return n, err
}

// entry applies one tar entry.
func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanPath(hdr.Name)
	if err != nil {
		return err
	}
	base := path.Base(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(rel)
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("%w (type %q)", ErrUnsupported, hdr.Typeflag)
	}
	if rel == "." && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: the root must be a directory", ErrUnsafePath)
	}
	target, err := u.resolve(rel)
	if err != nil {
		return err
	}
	if err := u.mkdirAll(path.Dir(target)); err != nil {
		return err
	}
	uid, gid, err := u.owner(hdr)
	if err != nil {
		return err
	}
	special := hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock || hdr.Typeflag == tar.TypeFifo
	if special || hdr.Typeflag == tar.TypeLink && u.linksSkipped(hdr.Linkname) {
		return u.skip(target, rel, hdr)
	}
	delete(u.skipped, target)
	mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 && hdr.Typeflag != tar.TypeSymlink && hdr.Typeflag != tar.TypeLink {
		mode &^= fs.ModeSetuid | fs.ModeSetgid
		u.stats.Stripped = append(u.stats.Stripped, rel)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = u.dir(target, mode, uid, gid)
	case tar.TypeReg, tar.TypeGNUSparse:
		err = u.file(target, r, hdr, mode, uid, gid)
	case tar.TypeSymlink:
		err = u.symlink(target, hdr.Linkname, uid, gid)
	case tar.TypeLink:
		err = u.hardlink(target, hdr.Linkname)
	}
	if err != nil {
		return err
	}
	u.markSeen(target)
	return nil
}

// skip leaves out a device node or fifo (or a hard link to one): what
// lower layers had at target goes, as under any entry, and nothing
// replaces it.
func (u *unpacker) skip(target, rel string, hdr *tar.Header) error {
	if target == "." {
		return fmt.Errorf("%w: the root must be a directory", ErrUnsafePath)
	}
	if _, err := u.replace(target, false); err != nil {
		return err
	}
	u.skipped[target] = true
	what := specialType(hdr.FileInfo().Mode())
	if hdr.Typeflag == tar.TypeLink {
		what = "hard link to " + hdr.Linkname
	}
	u.stats.Skipped = append(u.stats.Skipped, rel+" ("+what+")")
	return nil
}

// linksSkipped reports whether a hard link's target is a device node or
// fifo that was not created.
func (u *unpacker) linksSkipped(linkname string) bool {
	rel, err := cleanPath(linkname)
	if err != nil || rel == "." {
		return false // hardlink refuses it
	}
	src, err := u.resolve(rel)
	return err == nil && u.skipped[src]
}

// cleanPath turns an entry name into a slash-separated path relative to
// the root ("." for the root itself), refusing absolute names and "..".
func cleanPath(name string) (string, error) {
	if len(name) > maxPathLen {
		return "", fmt.Errorf("%w: name longer than %d bytes", ErrUnsafePath, maxPathLen)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute path", ErrUnsafePath)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafePath)
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return "", fmt.Errorf("%w: \"..\" in path", ErrUnsafePath)
		default:
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return ".", nil
	}
	if len(parts) > maxDepth {
		return "", fmt.Errorf("%w: more than %d path components", ErrUnsafePath, maxDepth)
	}
	return strings.Join(parts, "/"), nil
}

// resolve returns where rel lands inside the root: symlinks among its
// parents are followed as the container will follow them, with the root
// as "/" and ".." stopping at it; the last element is not followed.
func (u *unpacker) resolve(rel string) (string, error) {
	if rel == "." {
		return ".", nil
	}
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		return base, nil
	}
	rdir, ok := u.dirs[dir]
	if !ok {
		var err error
		if rdir, err = u.resolveDir(dir); err != nil {
			return "", err
		}
		u.dirs[dir] = rdir
	}
	if rdir == "." {
		return base, nil
	}
	return rdir + "/" + base, nil
}

func (u *unpacker) resolveDir(dir string) (string, error) {
	todo := strings.Split(dir, "/")
	var done []string
	links, steps := 0, 0
	for len(todo) > 0 {
		if steps++; steps > maxSteps || len(done) >= maxDepth {
			return "", fmt.Errorf("%w: %s resolves through too many components", ErrUnsafePath, dir)
		}
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cand := strings.Join(append(done, c), "/")
		fi, err := u.root.Lstat(cand)
		if errors.Is(err, fs.ErrNotExist) {
			done = append(done, c)
			continue
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("%w: too many levels of symbolic links in %s", ErrUnsafePath, dir)
		}
		target, err := u.root.Readlink(cand)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = done[:0]
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return strings.Join(done, "/"), nil
}

// markSeen records that the current layer wrote target and its parents,
// so that an opaque whiteout in the same layer leaves them alone.
func (u *unpacker) markSeen(target string) {
	for p := target; p != "." && p != "/" && !u.seen[p]; p = path.Dir(p) {
		u.seen[p] = true
	}
}

// mkdirAll creates the missing directories of dir (already resolved) with
// mode 0755, owned by the image's root user.
func (u *unpacker) mkdirAll(dir string) error {
	if dir == "." {
		return nil
	}
	if fi, err := u.root.Lstat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if err := u.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	if err := u.root.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // a directory; a file or link here fails at the next step
		}
		return err
	}
	if u.chown {
		if err := u.root.Lchown(dir, u.rootUID, u.rootGID); err != nil {
			return err
		}
	}
	return u.root.Chmod(dir, 0o755)
}

// changed forgets resolved directories after links or directories moved.
func (u *unpacker) changed() { clear(u.dirs) }

// owner returns the uid and gid to write for hdr.
func (u *unpacker) owner(hdr *tar.Header) (int, int, error) {
	uid, gid := hdr.Uid, hdr.Gid
	if uid < 0 || gid < 0 || uid >= math.MaxUint32 || gid >= math.MaxUint32 {
		return 0, 0, fmt.Errorf("%w: %d:%d", ErrBadOwner, uid, gid)
	}
	if u.chownFn != nil {
		mu, mg := u.chownFn(uid, gid)
		if mu < 0 || mg < 0 {
			return 0, 0, fmt.Errorf("%w: %d:%d", ErrBadOwner, uid, gid)
		}
		uid, gid = mu, mg
	}
	return uid, gid, nil
}

// replace removes whatever is at target, unless it is a directory and
// keepDir is set.
func (u *unpacker) replace(target string, keepDir bool) (exists bool, err error) {
	fi, err := u.root.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if keepDir && fi.IsDir() {
		return true, nil
	}
	if err := u.root.RemoveAll(target); err != nil {
		return false, err
	}
	u.changed()
	return false, nil
}

func (u *unpacker) dir(target string, mode fs.FileMode, uid, gid int) error {
	if target != "." {
		exists, err := u.replace(target, true)
		if err != nil {
			return err
		}
		if !exists {
			if err := u.root.Mkdir(target, 0o700); err != nil {
				return err
			}
		}
	}
	if u.chown {
		if err := u.root.Lchown(target, uid, gid); err != nil {
			return err
		}
	}
	return u.root.Chmod(target, mode)
}

func (u *unpacker) file(target string, r io.Reader, hdr *tar.Header, mode fs.FileMode, uid, gid int) error {
	if _, err := u.replace(target, false); err != nil {
		return err
	}
	f, err := u.root.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if u.chown {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return u.root.Chtimes(target, hdr.ModTime, hdr.ModTime)
}

func (u *unpacker) symlink(target, linkname string, uid, gid int) error {
	if linkname == "" {
		return fmt.Errorf("%w: empty symlink target", ErrUnsafePath)
	}
	if _, err := u.replace(target, false); err != nil {
		return err
	}
	if err := u.root.Symlink(linkname, target); err != nil {
		return err
	}
	u.changed()
	if u.chown {
		return u.root.Lchown(target, uid, gid)
	}
	return nil
}

// hardlink links target to another entry of the image. The link target
// must be a relative name without ".." that resolves to a non-directory
// inside the root; it is linked as it is, a symlink included.
func (u *unpacker) hardlink(target, linkname string) error {
	rel, err := cleanPath(linkname)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", linkname, err)
	}
	if rel == "." {
		return fmt.Errorf("%w: hard link to the root", ErrUnsafePath)
	}
	src, err := u.resolve(rel)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", linkname, err)
	}
	fi, err := u.root.Lstat(src)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", linkname, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: hard link to directory %q", ErrUnsafePath, linkname)
	}
	if src == target {
		return nil
	}
	if _, err := u.replace(target, false); err != nil {
		return err
	}
	if err := u.root.Link(src, target); err != nil {
		return err
	}
	u.changed()
	return nil
}

// whiteout applies .wh.NAME (remove NAME from lower layers) and
// .wh..wh..opq (hide everything lower layers put in the directory).
func (u *unpacker) whiteout(rel string) error {
	dir, base := path.Split(rel)
	rdir := "."
	if dir = strings.TrimSuffix(dir, "/"); dir != "" {
		// The directory itself may be a link; whiteouts name its contents.
		var err error
		if rdir, err = u.resolveDir(dir); err != nil {
			return err
		}
	}
	if base == whiteoutOpaque {
		return u.opaque(rdir)
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout of %q", ErrUnsafePath, name)
	}
	victim := name
	if rdir != "." {
		victim = rdir + "/" + name
	}
	if err := u.root.RemoveAll(victim); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	u.changed()
	return nil
}

// opaque removes the entries of dir that the current layer did not write.
func (u *unpacker) opaque(dir string) error {
	f, err := u.root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		child := n
		if dir != "." {
			child = dir + "/" + n
		}
		if !u.seen[child] {
			if err := u.root.RemoveAll(child); err != nil {
				return err
			}
			u.changed()
			continue
		}
		fi, err := u.root.Lstat(child)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if err := u.opaque(child); err != nil {
				return err
			}
		}
	}
	return nil
}
