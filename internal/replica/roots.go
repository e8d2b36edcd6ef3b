package replica

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Replicas' root filesystems live outside the data directory, under
// MOUNT/.rung-roots/SCOPE/ID, where MOUNT is the mount point of the
// filesystem that holds the data directory and SCOPE a hash of its path
// (the one that names its cgroups). A container's /proc/self/mountinfo
// shows the path of its root inside that filesystem, whatever bind mounts
// lead there: under the data directory it would name the operator's
// directories; this way it names only /.rung-roots/SCOPE/ID. Being on the
// same filesystem, the roots use the disk the operator gave rung.
// DIR/replicas/ID/rootfs is a symbolic link to the replica's root, for
// readers of the bundle; the runtime gets the real path.

// rootsParent is the directory under which the roots of the data directory
// abs live (SCOPE not included).
func rootsParent(abs string) (string, error) {
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("data dir: mounts: %w", err)
	}
	defer f.Close()
	best := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if (real == mp || mp == "/" || strings.HasPrefix(real, mp+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("data dir: mounts: %w", err)
	}
	if best == "" {
		return "", errors.New("data dir: no mount holds it")
	}
	return filepath.Join(best, ".rung-roots"), nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space…).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// rootfsPath is where replica id's root filesystem lives.
func (n *Node) rootfsPath(id string) string { return filepath.Join(n.roots, id) }

// removeReplica deletes replica id's bundle directory and its root, and
// the roots directory of this data directory once it is empty, so that
// data directories that come and go (tests, demos) leave nothing there.
func (n *Node) removeReplica(id string) error {
	err := errors.Join(unmountUnder(n.rootfsPath(id)), os.RemoveAll(n.replicaDir(id)), os.RemoveAll(n.rootfsPath(id)))
	n.dropRootsIfEmpty()
	return err
}

// makeRoot creates replica id's empty root directory, and the roots
// directory it lives in when removeReplica removed it, with the data
// directory's path in it for sweepRoots.
func (n *Node) makeRoot(id string) (string, error) {
	p := n.rootfsPath(id)
	if err := unmountUnder(p); err != nil {
		return "", err
	}
	if err := os.RemoveAll(p); err != nil { // a crash's leftover
		return "", err
	}
	var err error
	for range 3 { // a concurrent removeReplica may remove the parent between the two
		if err = os.MkdirAll(n.roots, 0o711); err != nil {
			return "", fmt.Errorf("replica roots: %w", err)
		}
		if err = os.WriteFile(filepath.Join(n.roots, dataDirFile), []byte(n.dir), 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("replica roots: %w", err)
		}
		if err = os.Mkdir(p, 0o755); !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	return p, err
}

// dataDirFile, in a data directory's roots directory, names the data
// directory.
const dataDirFile = ".datadir"

// sweepRoots deletes the roots that no replica of their data directory
// owns any more: every root of a data directory that was deleted (a test's
// or a demo's), and a root whose replica directory is gone (a crash
// between removing the two). Roots directories without a .datadir are left
// alone: nothing says whose they are.
func sweepRoots(parent string) {
	scopes, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, sc := range scopes {
		dir := filepath.Join(parent, sc.Name())
		b, err := os.ReadFile(filepath.Join(dir, dataDirFile))
		if err != nil || !filepath.IsAbs(string(b)) {
			continue
		}
		replicas := filepath.Join(string(b), "replicas")
		if _, err := os.Stat(replicas); errors.Is(err, os.ErrNotExist) {
			_ = os.RemoveAll(dir)
			continue
		}
		roots, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, r := range roots {
			if !r.IsDir() {
				continue
			}
			// Prepare makes the replica's directory before its root, and
			// Remove deletes it first: a root alone is left over.
			if _, err := os.Lstat(filepath.Join(replicas, r.Name())); errors.Is(err, os.ErrNotExist) {
				_ = os.RemoveAll(filepath.Join(dir, r.Name()))
			}
		}
	}
}

// dropRootsIfEmpty removes the data directory's roots directory when it
// holds no root (only its .datadir).
func (n *Node) dropRootsIfEmpty() {
	ents, err := os.ReadDir(n.roots)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Name() != dataDirFile {
			return
		}
	}
	_ = os.Remove(filepath.Join(n.roots, dataDirFile))
	_ = os.Remove(n.roots) // fails if a root came meanwhile: it stays
}
