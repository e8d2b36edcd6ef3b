// Package jail locks a VMM up before it runs: `rung-vm jail` is started by
// the vm driver as root in fresh mount, PID, network, IPC and UTS
// namespaces, waits for the driver's go-ahead (the driver puts it in the
// replica's cgroup first), builds a root holding only what QEMU needs
// (read-only /usr, a few device nodes, the guest's kernel, initramfs and
// disk, and the replica's run directory for its sockets and console),
// pivots into it, drops to the replica's unprivileged host uid with
// no_new_privs, and execs QEMU, which then applies its own seccomp filter
// (-sandbox on,...).
package jail

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths inside the jail.
const (
	RunDir = "/run/vm" // the replica's run directory (sockets, console log)
	VMDir  = "/vm"     // kernel, initramfs, disk (read-only)
	QEMU   = "/usr/bin/qemu-system-x86_64"
)

// Spec is what the driver passes on the command line.
type Spec struct {
	Root     string   // an empty directory the jail's root is mounted on
	Run      string   // host directory bound at RunDir, writable by UID
	Files    []string // host files bound read-only at VMDir/BASENAME
	KVM      bool     // bind /dev/kvm
	UID, GID uint32
	Args     []string // QEMU's arguments
}

// Args returns the `rung-vm jail` arguments for s.
func (s Spec) CommandArgs() []string {
	a := []string{"jail", "-root", s.Root, "-run", s.Run, "-uid", fmt.Sprint(s.UID), "-gid", fmt.Sprint(s.GID)}
	for _, f := range s.Files {
		a = append(a, "-file", f)
	}
	if s.KVM {
		a = append(a, "-kvm")
	}
	return append(append(a, "--"), s.Args...)
}

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

// Main is `rung-vm jail`: it returns an exit code only on failure (on
// success it has become QEMU). It must run locked to its OS thread (the
// parent-death signal set here belongs to one thread, the one that execs).
func Main(args []string) int {
	runtime.LockOSThread()
	var s Spec
	var fl files
	fs := flag.NewFlagSet("jail", flag.ContinueOnError)
	fs.StringVar(&s.Root, "root", "", "jail root mount point")
	fs.StringVar(&s.Run, "run", "", "run directory")
	uid := fs.Uint("uid", 0, "uid")
	gid := fs.Uint("gid", 0, "gid")
	fs.Var(&fl, "file", "read-only file")
	fs.BoolVar(&s.KVM, "kvm", false, "bind /dev/kvm")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	s.UID, s.GID, s.Files, s.Args = uint32(*uid), uint32(*gid), fl, fs.Args()
	// The driver's go-ahead: one byte on fd 3 once the cgroup holds us.
	gate := os.NewFile(3, "gate")
	b := make([]byte, 1)
	if n, _ := gate.Read(b); n != 1 || b[0] != 'G' {
		fmt.Fprintln(os.Stderr, "rung-vm jail: no go-ahead from the driver")
		return 1
	}
	gate.Close()
	if err := enter(s); err != nil {
		fmt.Fprintf(os.Stderr, "rung-vm jail: %v\n", err)
		return 1
	}
	return 1 // not reached
}

func enter(s Spec) error {
	if s.UID == 0 || s.GID == 0 {
		return errors.New("refusing to run the VMM as root")
	}
	if !filepath.IsAbs(s.Root) || !filepath.IsAbs(s.Run) {
		return errors.New("root and run must be absolute")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	r := s.Root
	if err := unix.Mount("tmpfs", r, "tmpfs", unix.MS_NOSUID, "mode=755,size=1m"); err != nil {
		return fmt.Errorf("jail root: %w", err)
	}
	bind := func(src, dst string, flags uintptr) error {
		if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
		if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err != nil {
			return fmt.Errorf("remount %s: %w", dst, err)
		}
		return nil
	}
	mkdir := func(p string) error { return os.MkdirAll(filepath.Join(r, p), 0o755) }
	touch := func(p string) error {
		if err := mkdir(filepath.Dir(p)); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(r, p), os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		return f.Close()
	}
	// The loader and QEMU's libraries and firmware, read-only. /lib and
	// /lib64 are links into /usr on Debian (merged /usr); else bound too.
	if err := mkdir("usr"); err != nil {
		return err
	}
	if err := bind("/usr", filepath.Join(r, "usr"), unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	for _, l := range []string{"lib", "lib64", "bin", "sbin"} {
		if target, err := os.Readlink("/" + l); err == nil {
			if err := os.Symlink(target, filepath.Join(r, l)); err != nil {
				return err
			}
		} else if fi, err := os.Stat("/" + l); err == nil && fi.IsDir() && l != "bin" && l != "sbin" {
			if err := mkdir(l); err != nil {
				return err
			}
			if err := bind("/"+l, filepath.Join(r, l), unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		if err := touch("etc/ld.so.cache"); err != nil {
			return err
		}
		if err := bind("/etc/ld.so.cache", filepath.Join(r, "etc/ld.so.cache"), unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV); err != nil {
			return err
		}
	}
	devs := []string{"null", "zero", "urandom"}
	if s.KVM {
		devs = append(devs, "kvm")
	}
	for _, d := range devs {
		if err := touch("dev/" + d); err != nil {
			return err
		}
		if err := bind("/dev/"+d, filepath.Join(r, "dev", d), unix.MS_NOSUID|unix.MS_NOEXEC); err != nil {
			return err
		}
	}
	for _, f := range s.Files {
		if !filepath.IsAbs(f) {
			return fmt.Errorf("file %q is not absolute", f)
		}
		dst := filepath.Join(VMDir, filepath.Base(f))
		if err := touch(dst); err != nil {
			return err
		}
		if err := bind(f, filepath.Join(r, dst), unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC); err != nil {
			return err
		}
	}
	if err := mkdir(RunDir); err != nil {
		return err
	}
	if err := bind(s.Run, filepath.Join(r, RunDir), unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC); err != nil {
		return err
	}
	if err := mkdir("proc"); err != nil {
		return err
	}
	// This PID namespace's own /proc (QEMU reads /proc/self).
	if err := unix.Mount("proc", filepath.Join(r, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	if err := mkdir(".old"); err != nil {
		return err
	}
	if err := unix.PivotRoot(r, filepath.Join(r, ".old")); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	_ = os.Remove("/.old")
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("read-only jail root: %w", err)
	}
	// Unprivileged from here: no groups, the replica's uid and gid (which
	// drops every capability), and nothing can raise it again.
	if err := unix.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(int(s.GID), int(s.GID), int(s.GID)); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := unix.Setresuid(int(s.UID), int(s.UID), int(s.UID)); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// No parent-death signal (the uid change cleared the one the driver
	// set while the jail was parked): QEMU outlives a killed agent, whose
	// next start adopts it over its channel (microvm/adopt.go).
	env := []string{"PATH=/usr/bin", "HOME=" + RunDir}
	return unix.Exec(QEMU, append([]string{QEMU}, s.Args...), env)
}
