package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	// The pure-Go SQLite driver go-rpmdb opens Fedora and RHEL 9's
	// rpmdb.sqlite with; go-rpmdb does not register one itself.
	seccomp "github.com/elastic/go-seccomp-bpf"
	_ "github.com/glebarez/go-sqlite"
	rpmdb "github.com/knqyf263/go-rpmdb/pkg"

	"rung.dev/rung/internal/policy"
)

// ErrUnreadableDB is returned for a package database that is present in an
// image but cannot be read: corrupt, hostile, or too slow to parse.
var ErrUnreadableDB = errors.New("package database unreadable")

// rpm databases are parsed in a child process of this same binary.
//
// Why: an image's rpm database is hostile input handed to third-party
// parsers (go-rpmdb for Berkeley DB and NDB, a transpiled SQLite). A
// crafted file can make such a parser panic in a goroutine we can't
// recover, loop forever over a cyclic page chain, or allocate without
// bound; in-process, any of those takes down the node agent or the API
// server with every tenant on it. In a child it costs one exit status:
// the child runs as nobody (when rung is root), under memory, CPU, file
// size and descriptor limits, is killed when the timeout passes or its
// parent dies, and its output is bounded.
const (
	rpmChildArg0 = "rung-rpmdb"
	rpmChildEnv  = "RUNG_RPMDB_CHILD"
	// rpmTimeout bounds one database's parse (a full RHEL image's
	// database reads in well under a second).
	rpmTimeout = 60 * time.Second
	// rpmMaxOutput bounds what the parent reads back from the child.
	rpmMaxOutput = 64 << 20
	// nobody is the unprivileged user the child runs as when rung is root.
	nobody = 65534
)

// The child runs from this package's init, before main or TestMain: any
// binary that links the scanner (rung, and every test binary that scans an
// image) can serve as the parser process without wiring it up anywhere.
// Both the argv[0] and the environment must say so, which nothing but
// ReadRPMDatabase sets.
func init() {
	if filepath.Base(os.Args[0]) == rpmChildArg0 && os.Getenv(rpmChildEnv) == "1" {
		os.Exit(rpmChild(os.Args[1:], os.Stdout, os.Stderr))
	}
}

// rpmEntry is one package as the child reports it.
type rpmEntry struct {
	Name      string `json:"name"`
	Epoch     *int   `json:"epoch,omitempty"`
	Version   string `json:"version"`
	Release   string `json:"release"`
	Arch      string `json:"arch,omitempty"`
	SourceRPM string `json:"sourceRpm,omitempty"`
}

// rpmChild lists the packages of the rpm database at args[0] as JSON on
// stdout and returns the exit status.
func rpmChild(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: rung-rpmdb DATABASE")
		return 2
	}
	if err := limitSelf(); err != nil {
		fmt.Fprintln(stderr, "limits:", err)
		return 1
	}
	// No privilege can be gained by exec from here on, and the system
	// calls a parser has no use for fail (seccomp sets no_new_privs too).
	if err := seccomp.LoadFilter(rpmChildFilter); err != nil {
		fmt.Fprintln(stderr, "seccomp:", err)
		return 1
	}
	entries, err := listRPM(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(entries); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// rpmChildFilter denies the parser child every system call that would
// reach beyond reading one file and writing JSON: running programs,
// sockets, other processes' memory, mounts and namespaces, kernel
// modules, keys, BPF, io_uring (whose operations seccomp can't see),
// identity changes. It is a deny list on purpose: the Go runtime and the
// transpiled SQLite use a broad, version-dependent set of calls, and a
// parser child that dies on a call an allow list forgot would refuse
// good images. Denied calls fail with EPERM; TSync covers every thread
// the runtime has started by now.
var rpmChildFilter = seccomp.Filter{
	NoNewPrivs: true,
	Flag:       seccomp.FilterFlagTSync,
	Policy: seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{{
			Action: seccomp.ActionErrno,
			Names: []string{
				"execve", "execveat", "fork", "vfork",
				"socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
				"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "pidfd_open", "kcmp",
				"mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
				"open_by_handle_at", "name_to_handle_at",
				"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
				"keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
				"io_uring_setup", "io_uring_enter", "io_uring_register",
				"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "capset",
				"personality", "acct", "swapon", "swapoff", "reboot", "syslog",
				"settimeofday", "clock_settime", "adjtimex", "sethostname", "setdomainname",
			},
		}},
	},
}

// limitSelf caps the child's own resources before it touches the file.
func limitSelf() error {
	for _, l := range []struct {
		res int
		max uint64
	}{
		{syscall.RLIMIT_AS, 4 << 30},           // address space: the Go heap, SQLite's page cache, the mapped file
		{syscall.RLIMIT_CPU, 60},               // seconds; the parent's timeout usually comes first
		{syscall.RLIMIT_FSIZE, 2 * maxCapture}, // SQLite writes its -shm and -wal, and may checkpoint into the copy
		{syscall.RLIMIT_NOFILE, 64},
		{syscall.RLIMIT_CORE, 0},
	} {
		if err := syscall.Setrlimit(l.res, &syscall.Rlimit{Cur: l.max, Max: l.max}); err != nil {
			return fmt.Errorf("rlimit %d: %w", l.res, err)
		}
	}
	return nil
}

func listRPM(path string) ([]rpmEntry, error) {
	db, err := rpmdb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	pkgs, err := db.ListPackages()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	out := make([]rpmEntry, 0, len(pkgs))
	for _, p := range pkgs {
		out = append(out, rpmEntry{Name: p.Name, Epoch: p.Epoch, Version: p.Version, Release: p.Release, Arch: p.Arch, SourceRPM: p.SourceRpm})
	}
	return out, nil
}

// ReadRPMDatabase lists the packages installed according to the rpm
// database at path: Berkeley DB (Packages: CentOS 7, RHEL 8, Amazon Linux
// 2), SQLite (rpmdb.sqlite: Fedora 33+, RHEL 9, Azure Linux) or NDB
// (Packages.db: SUSE). A "-wal" file beside a SQLite database is read
// with it. The parse runs in a limited child process (see rpmChildArg0);
// any failure there is ErrUnreadableDB. Versions are [EPOCH:]VERSION-RELEASE,
// the source is the source RPM's name, and rpm's gpg-pubkey entries
// (imported signing keys, not software) are left out.
func ReadRPMDatabase(ctx context.Context, path, ecosystem string) ([]policy.Package, error) {
	db, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var wal io.Reader
	if f, err := os.Open(path + "-wal"); err == nil {
		defer f.Close()
		wal = f
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return readRPM(ctx, filepath.Base(path), db, wal, ecosystem)
}

// readRPM parses the rpm database named name (its base name, which says
// the format to nobody but SQLite, which looks for name-wal) from db and
// an optional write-ahead log.
func readRPM(ctx context.Context, name string, db, wal io.Reader, ecosystem string) ([]policy.Package, error) {
	entries, err := runRPMChild(ctx, name, db, wal)
	if err != nil {
		return nil, err
	}
	out := make([]policy.Package, 0, len(entries))
	for _, e := range entries {
		if e.Name == "" || e.Version == "" || e.Name == "gpg-pubkey" {
			continue
		}
		v := e.Version
		if e.Release != "" {
			v += "-" + e.Release
		}
		if e.Epoch != nil && *e.Epoch != 0 {
			v = strconv.Itoa(*e.Epoch) + ":" + v
		}
		p := policy.Package{Name: e.Name, Version: v, Ecosystem: ecosystem, DB: DBRPM, Source: e.Name, SourceVersion: v}
		if name, ok := srpmName(e.SourceRPM); ok {
			p.Source = name
		}
		out = append(out, p)
	}
	// Every rpm-based image has packages (filesystem, at least): a present
	// database that yields none was emptied or is unreadable in a way the
	// parser didn't notice, and can't vouch for the image.
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the database lists no packages", ErrUnreadableDB)
	}
	return out, nil
}

// rpmSlots bounds the parser children running at once: each may use up to
// its address-space limit, and a burst of images must not add those up.
var rpmSlots = make(chan struct{}, 2)

// runRPMChild writes the database into a private directory the child owns
// and runs the child on it. Failures of the child are ErrUnreadableDB (the
// database's fault); failures to set it up are returned as they are (this
// machine's fault), so that an image is never blamed for them.
func runRPMChild(ctx context.Context, name string, db, wal io.Reader) ([]rpmEntry, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return nil, fmt.Errorf("%w: database name %q", ErrUnreadableDB, name)
	}
	select {
	case rpmSlots <- struct{}{}:
		defer func() { <-rpmSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	root := os.Geteuid() == 0
	base := os.TempDir()
	if root && !othersCanReach(base) {
		// SQLite opens its files by absolute path, so nobody needs search
		// permission on every directory above the copy (a TMPDIR of mode
		// 0700 doesn't give it); /tmp does.
		base = "/tmp"
	}
	if root && !othersCanReach(base) {
		return nil, fmt.Errorf("rpm database parser: neither TMPDIR nor /tmp is searchable by others, so the parser can't run as nobody; refusing to parse as root")
	}
	owner := -1
	if root {
		owner = nobody
	}
	dir, err := os.MkdirTemp(base, "rung-rpmdb-")
	if err != nil {
		return nil, fmt.Errorf("rpm database parser: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := writeFile(filepath.Join(dir, name), db, owner); err != nil {
		return nil, fmt.Errorf("rpm database parser: %w", err)
	}
	if wal != nil {
		if err := writeFile(filepath.Join(dir, name+"-wal"), wal, owner); err != nil {
			return nil, fmt.Errorf("rpm database parser: %w", err)
		}
	}
	// The directory last: until now nobody could not enter it, so nothing
	// could swap a file in it for a link between write and chown.
	if owner >= 0 {
		if err := os.Chown(dir, owner, owner); err != nil {
			return nil, fmt.Errorf("rpm database parser: %w", err)
		}
	}

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, rpmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe", name)
	cmd.Args[0] = rpmChildArg0
	cmd.Dir = dir
	cmd.Env = []string{rpmChildEnv + "=1", "GOMAXPROCS=1", "HOME=" + dir, "TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if root {
		// As nobody with no groups, in network, IPC and UTS namespaces of
		// its own: the parser has nothing to talk to.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = rpmMaxOutput, 4<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Pdeathsig follows the thread that forked the child, not the process:
	// keep this goroutine on its thread until the child is gone.
	goruntime.LockOSThread()
	err = cmd.Run()
	goruntime.UnlockOSThread()
	if err := parent.Err(); err != nil {
		return nil, err // the caller gave up: not the database's fault
	}
	if err != nil {
		if _, ran := errors.AsType[*exec.ExitError](err); !ran {
			return nil, fmt.Errorf("rpm database parser: start: %w", err)
		}
		// The first line says it ("fatal error: runtime: out of memory");
		// the rest of a crash is the child's stack.
		why, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = fmt.Sprintf("parse did not finish within %s", rpmTimeout)
		} else if why == "" {
			why = err.Error()
		}
		return nil, fmt.Errorf("%w: %s", ErrUnreadableDB, why)
	}
	if stdout.over {
		return nil, fmt.Errorf("%w: package list over %d bytes", ErrUnreadableDB, rpmMaxOutput)
	}
	var entries []rpmEntry
	if err := json.Unmarshal(stdout.Bytes(), &entries); err != nil {
		return nil, fmt.Errorf("%w: child output: %v", ErrUnreadableDB, err)
	}
	return entries, nil
}

// othersCanReach reports whether a user with no relation to the owners of
// dir and its parents may search them all.
func othersCanReach(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// writeFile creates to (it must not exist), copies in into it and, when
// owner is not -1, gives it to owner through the open descriptor.
func writeFile(to string, in io.Reader, owner int) error {
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if owner >= 0 {
		if err := out.Chown(owner, owner); err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

// limitedBuffer keeps the first max bytes written to it and notes the rest.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
