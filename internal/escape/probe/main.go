// Command probe runs inside a replica for the escape tests: it tries
// system calls that a hardened replica must not be able to make and
// prints how each one failed, one "NAME ERRNO" line per attempt, or
// allocates memory until it is stopped. It is built static (CGO_ENABLED=0)
// into the replica's rootfs by the tests; it is not part of rung.
//
//	probe syscalls     try each blocked system call, print "name result"
//	probe alloc MiB    allocate and touch MiB mebibytes, printing progress
//	probe reach PID…   signal 0 and PTRACE_SEIZE each PID (let go on exit),
//	                   print "signal-PID result" and "ptrace-PID result"
//	probe filter PID   print PID's first seccomp filter (host root; the
//	                   process is stopped for the read), "code jt jf k" lines
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// insideEnv must be "1" for the probe to run: the tests set it in the
// replica's spec.
const insideEnv = "RUNG_ESCAPE_PROBE"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe syscalls | probe alloc MiB")
		os.Exit(2)
	}
	if os.Args[1] == "reach" && os.Getenv(insideEnv) == "1" {
		// Runs on the host with a sentry's credentials (the sentry runs in
		// the host's PID namespace): it only probes, and lets go at once.
		for _, arg := range os.Args[2:] {
			pid, err := strconv.Atoi(arg)
			if err != nil || pid <= 1 {
				fmt.Fprintf(os.Stderr, "probe: bad pid %q\n", arg)
				os.Exit(2)
			}
			fmt.Printf("signal-%d %s\n", pid, result(unix.Kill(pid, 0)))
			// SEIZE does not stop the target; exiting lets go of it.
			err = unix.PtraceSeize(pid)
			fmt.Printf("ptrace-%d %s\n", pid, result(err))
		}
		return
	}
	if os.Args[1] == "filter" && len(os.Args) == 3 && os.Getenv(insideEnv) == "1" {
		// Runs on the host as root, in a process of its own: the ptrace
		// stop it causes is reported to it alone.
		pid, err := strconv.Atoi(os.Args[2])
		if err != nil || pid <= 1 {
			fmt.Fprintf(os.Stderr, "probe: bad pid %q\n", os.Args[2])
			os.Exit(2)
		}
		if err := printFilter(pid); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
		return
	}
	// The attempts change the machine when they succeed (hostname, mounts):
	// never run outside a replica's own PID namespace.
	if os.Getenv(insideEnv) != "1" || os.Getpid() > 64 {
		fmt.Fprintf(os.Stderr, "probe: refusing to run outside a replica (needs %s=1 and a small pid, got pid %d)\n", insideEnv, os.Getpid())
		os.Exit(3)
	}
	switch os.Args[1] {
	case "syscalls":
		for _, a := range attempts() {
			fmt.Printf("%s %s\n", a.name, result(a.call()))
		}
	case "alloc":
		mib, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		alloc(mib)
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// result names the outcome of a call: "ok" or the errno's symbol.
func result(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(syscall.Errno); ok {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
		return "errno" + strconv.Itoa(int(e))
	}
	return err.Error()
}

type attempt struct {
	name string
	call func() error
}

func errno(_, _ uintptr, e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// attempts are system calls Docker's default seccomp profile (without the
// capabilities that gate them) refuses. Each is made with arguments that
// would do something observable if it were allowed.
func attempts() []attempt {
	tmpfs, _ := unix.BytePtrFromString("tmpfs")
	target, _ := unix.BytePtrFromString("/tmp")
	keyType, _ := unix.BytePtrFromString("user")
	keyDesc, _ := unix.BytePtrFromString("rung-escape")
	return []attempt{
		{"unshare-user", func() error { return unix.Unshare(unix.CLONE_NEWUSER) }},
		{"unshare-mount", func() error { return unix.Unshare(unix.CLONE_NEWNS) }},
		{"unshare-net", func() error { return unix.Unshare(unix.CLONE_NEWNET) }},
		{"setns", func() error { return unix.Setns(0, 0) }},
		{"mount", func() error {
			return errno(unix.Syscall6(unix.SYS_MOUNT, uintptr(unsafe.Pointer(tmpfs)), uintptr(unsafe.Pointer(target)),
				uintptr(unsafe.Pointer(tmpfs)), 0, 0, 0))
		}},
		{"keyctl", func() error {
			return errno(unix.Syscall6(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(^uint32(2)+1) /* KEY_SPEC_SESSION_KEYRING=-3 */, 1, 0, 0, 0))
		}},
		{"add_key", func() error {
			return errno(unix.Syscall6(unix.SYS_ADD_KEY, uintptr(unsafe.Pointer(keyType)), uintptr(unsafe.Pointer(keyDesc)), 0, 0,
				uintptr(0xfffffffd) /* KEY_SPEC_SESSION_KEYRING */, 0))
		}},
		{"ptrace", func() error { return errno(unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_ATTACH, 1, 0, 0, 0, 0)) }},
		{"bpf", func() error {
			attr := make([]byte, 128)
			return errno(unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr))))
		}},
		{"perf_event_open", func() error {
			attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
			attr.Size = uint32(unsafe.Sizeof(attr))
			fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}},
		{"open_by_handle_at", func() error {
			h := unix.NewFileHandle(1, make([]byte, 8))
			fd, err := unix.OpenByHandleAt(unix.AT_FDCWD, h, unix.O_RDONLY)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}},
		{"init_module", func() error { return errno(unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, 0)) }},
		{"kexec_load", func() error { return errno(unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0)) }},
		{"reboot", func() error { return unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF) }},
		{"swapon", func() error { return errno(unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(target)), 0, 0)) }},
		{"pivot_root", func() error { return unix.PivotRoot("/tmp", "/tmp") }},
		{"chroot", func() error { return unix.Chroot("/tmp") }},
		{"mknod", func() error { return unix.Mknod("/tmp/sda", unix.S_IFBLK|0o600, int(unix.Mkdev(8, 0))) }},
		// Whether or not mknod made the node, the host's disk must not open.
		{"open-device", func() error {
			fd, err := unix.Open("/tmp/sda", unix.O_RDONLY, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}},
		{"clock_settime", func() error {
			var ts unix.Timespec
			if err := unix.ClockGettime(unix.CLOCK_REALTIME, &ts); err != nil {
				return err
			}
			return errno(unix.Syscall(unix.SYS_CLOCK_SETTIME, unix.CLOCK_REALTIME, uintptr(unsafe.Pointer(&ts)), 0))
		}},
		{"sethostname", func() error { return unix.Sethostname([]byte("escaped")) }},
		{"capset", raiseCaps},
		// setuid(0) only means something for a non-root user: the tests
		// run the probe as one too.
		{"setuid-0", func() error { return errno(unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)) }},
	}
}

// raiseCaps asks for every capability in the effective, permitted and
// inheritable sets.
func raiseCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: ^uint32(0), Permitted: ^uint32(0), Inheritable: ^uint32(0)},
		{Effective: ^uint32(0), Permitted: ^uint32(0), Inheritable: ^uint32(0)},
	}
	return unix.Capset(&hdr, &data[0])
}

// alloc allocates and touches mib mebibytes, one at a time, so that the
// memory is really used (not only reserved).
func alloc(mib int) {
	var keep [][]byte
	for i := 1; i <= mib; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		keep = append(keep, b)
		if i%16 == 0 {
			fmt.Printf("allocated %d MiB\n", i)
		}
	}
	fmt.Printf("allocated %d MiB in all\n", len(keep))
}

// printFilter seizes pid, stops it, reads its first seccomp filter and
// lets it go.
func printFilter(pid int) error {
	runtime.LockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		return fmt.Errorf("seize %d: %w", pid, err)
	}
	defer unix.PtraceDetach(pid)
	if err := unix.PtraceInterrupt(pid); err != nil {
		return fmt.Errorf("interrupt %d: %w", pid, err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return fmt.Errorf("wait for %d to stop: %w", pid, err)
	}
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0, 0, 0, 0)
	if errno != 0 || n == 0 {
		return fmt.Errorf("PTRACE_SECCOMP_GET_FILTER %d: %v (%d instructions)", pid, errno, n)
	}
	raw := make([]unix.SockFilter, n)
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0,
		uintptr(unsafe.Pointer(&raw[0])), 0, 0); errno != 0 {
		return fmt.Errorf("PTRACE_SECCOMP_GET_FILTER %d: %w", pid, errno)
	}
	for _, f := range raw {
		fmt.Printf("%d %d %d %d\n", f.Code, f.Jt, f.Jf, f.K)
	}
	return nil
}
