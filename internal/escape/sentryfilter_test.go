package escape_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime/drivertest"
)

// TestSentrySeccompSignals reads gVisor's seccomp filter from a live
// sentry (PTRACE_SECCOMP_GET_FILTER, as host root) and evaluates it for the
// signal-sending system calls aimed at another process. It pins why the
// sentries' host uids must differ (TestSentrySeparation): gVisor's filter
// allows tgkill with any pid, so only the kernel's uid check keeps a
// compromised sentry from killing other tenants' sandboxes, and rung verify
// says WEAK when two tenants' sentries share a uid. Control: a call the
// sentry never needs (init_module) is not allowed, so the evaluation is
// real.
func TestSentrySeccompSignals(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the system call numbers and seccomp_data here are x86-64's")
	}
	forEachTier(t, func(t *testing.T, tr tier) {
		if !tr.sandbox() {
			t.Skip("sentries are the sandbox tier's")
		}
		pid := start(t, tr, "sentry-filter", replicaBundle(t, drivertest.Range(t, tenantA), "sentry-filter", "sleep 600", nil,
			bundle.WithResources(250, 128<<20, 96)))
		if st := procStatus(t, pid); st["Seccomp"] != "2" {
			t.Fatalf("sentry %d: Seccomp %q, want 2", pid, st["Seccomp"])
		}
		vm, err := bpf.NewVM(sentryFilter(t, pid))
		if err != nil {
			t.Fatal(err)
		}
		other := uint64(pid + 100000) // no process of this sandbox
		action := func(nr uint32, args ...uint64) string {
			ret, err := vm.Run(seccompData(nr, args...))
			if err != nil {
				t.Fatal(err)
			}
			switch uint32(ret) & unix.SECCOMP_RET_ACTION_FULL {
			case unix.SECCOMP_RET_ALLOW:
				return "allow"
			case unix.SECCOMP_RET_ERRNO:
				return fmt.Sprintf("errno %d", uint32(ret)&unix.SECCOMP_RET_DATA)
			default:
				return fmt.Sprintf("deny (%#x)", uint32(ret))
			}
		}
		got := map[string]string{
			"kill":              action(unix.SYS_KILL, other, uint64(unix.SIGKILL)),
			"tkill":             action(unix.SYS_TKILL, other, uint64(unix.SIGKILL)),
			"tgkill":            action(unix.SYS_TGKILL, other, other, uint64(unix.SIGKILL)),
			"rt_sigqueueinfo":   action(unix.SYS_RT_SIGQUEUEINFO, other, uint64(unix.SIGKILL), 0),
			"rt_tgsigqueueinfo": action(unix.SYS_RT_TGSIGQUEUEINFO, other, other, uint64(unix.SIGKILL), 0),
			"pidfd_send_signal": action(unix.SYS_PIDFD_SEND_SIGNAL, 3, uint64(unix.SIGKILL), 0, 0),
			"init_module":       action(unix.SYS_INIT_MODULE, 0, 0, 0),
		}
		t.Logf("the sentry's seccomp filter, for a signal to pid %d: %v", other, got)
		if got["init_module"] == "allow" {
			t.Fatalf("control: the filter allows init_module; the evaluation is wrong (%v)", got)
		}
		// The weakness, pinned: if this starts failing, gVisor restricted
		// tgkill, and verify.SharedSentryUID must change with it.
		if got["tgkill"] != "allow" {
			t.Errorf("tgkill to another pid: %s; gVisor now refuses it: update verify's sentry report", got["tgkill"])
		}
	})
}

// sentryFilter reads the first seccomp filter of process pid with probe
// filter: a process of its own, so the ptrace stop is reported to it and
// not to this test binary, the sentry's subreaper, whose driver waits for
// the sentry.
func sentryFilter(t *testing.T, pid int) []bpf.Instruction {
	t.Helper()
	cmd := exec.Command(probe(t), "filter", strconv.Itoa(pid))
	cmd.Env = append(os.Environ(), "RUNG_ESCAPE_PROBE=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe filter %d: %v", pid, err)
	}
	var ins []bpf.RawInstruction
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r bpf.RawInstruction
		if _, err := fmt.Sscanf(l, "%d %d %d %d", &r.Op, &r.Jt, &r.Jf, &r.K); err != nil {
			t.Fatalf("probe filter: %q: %v", l, err)
		}
		ins = append(ins, r)
	}
	prog, ok := bpf.Disassemble(ins)
	if !ok {
		var b strings.Builder
		for _, i := range prog {
			fmt.Fprintf(&b, "%v\n", i)
		}
		t.Fatalf("the sentry's filter has instructions bpf can't run:\n%s", b.String())
	}
	return prog
}

// seccompData is struct seccomp_data for x86-64 system call nr with args,
// laid out for golang.org/x/net/bpf, whose loads are big-endian: each
// 32-bit word seccomp loads is stored so that it reads as the kernel's
// native (little-endian) value, the low half of each 64-bit field first.
func seccompData(nr uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], unix.AUDIT_ARCH_X86_64)
	for i, a := range args {
		off := 16 + 8*i
		binary.BigEndian.PutUint32(b[off:], uint32(a))
		binary.BigEndian.PutUint32(b[off+4:], uint32(a>>32))
	}
	return b
}
