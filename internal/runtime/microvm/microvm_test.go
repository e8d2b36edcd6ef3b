package microvm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"rung.dev/rung/internal/runtime/microvm/guest"
)

func TestArgs(t *testing.T) {
	c := Config{
		Kernel:       "/var/lib/rung/vm/vmlinuz",
		Initrd:       "/var/lib/rung/vm/initrd",
		Cmdline:      "loglevel=4",
		MemoryMiB:    512,
		CPUs:         2,
		Disk:         "/vm/disk.img",
		ReadOnlyDisk: true,
		Channel:      "/run/vm/channel.sock",
		QMPSocket:    "/run/vm/qmp.sock",
		ConsoleLog:   "/run/vm/console.log",
	}
	got, err := c.Args()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-M", "q35",
		"-accel", "kvm", "-cpu", "host",
		"-m", "512M", "-smp", "2",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", "/var/lib/rung/vm/vmlinuz",
		"-append", "console=ttyS0 reboot=t panic=-1 quiet no_timer_check loglevel=4",
		"-initrd", "/var/lib/rung/vm/initrd",
		"-chardev", "file,id=console,path=/run/vm/console.log",
		"-serial", "chardev:console",
		"-device", "virtio-serial-pci,id=vs",
		"-chardev", "socket,id=channel,path=/run/vm/channel.sock,server=on,wait=off",
		"-device", "virtserialport,bus=vs.0,chardev=channel,name=rung.0",
		"-drive", "id=root,file=/vm/disk.img,format=raw,if=none,readonly=on",
		"-device", "virtio-blk-pci,drive=root",
		"-qmp", "unix:/run/vm/qmp.sock,server=on,wait=off",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}

	minimal, err := Config{Kernel: "/k", QMPSocket: "/q", ConsoleLog: "/c", Paused: true, NoKVM: true}.Args()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(minimal, " ")
	for _, want := range []string{"-accel tcg,tb-size=64 -cpu max", "-m 256M", "-smp 1", "-append console=ttyS0 reboot=t panic=-1 quiet no_timer_check -chardev", " -S"} {
		if !strings.Contains(joined, want) {
			t.Errorf("minimal args lack %q: %s", want, joined)
		}
	}
	for _, absent := range []string{"-drive", "-netdev", "virtserialport", "-initrd", "kvm"} {
		if strings.Contains(joined, absent) {
			t.Errorf("minimal args have %q: %s", absent, joined)
		}
	}
}

// TestArgsDevices: volumes and the tap are inherited descriptors, never
// paths: an fd set per volume (a writable one with its read-only twin),
// a virtio-blk device named by serial, the tap as virtio-net without an
// option ROM.
func TestArgsDevices(t *testing.T) {
	c := Config{Kernel: "/k", QMPSocket: "/q", ConsoleLog: "/c",
		Volumes: []Drive{{FD: 4, ReadFD: 5}, {FD: 6, ReadOnly: true}}, TapFD: 7}
	got, err := c.Args()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(got, " ")
	want := "-add-fd fd=4,set=1 -add-fd fd=5,set=1 -drive id=vol0,file=/dev/fdset/1,format=raw,if=none -device virtio-blk-pci,drive=vol0,serial=vol0 " +
		"-add-fd fd=6,set=2 -drive id=vol1,file=/dev/fdset/2,format=raw,if=none,readonly=on -device virtio-blk-pci,drive=vol1,serial=vol1 " +
		"-netdev tap,id=n0,fd=7 -device virtio-net-pci,netdev=n0,romfile= -qmp"
	if !strings.Contains(joined, want) {
		t.Errorf("args:\n%s\nlack\n%s", joined, want)
	}
	for name, bad := range map[string]Config{
		"stdio fd as a volume": {Kernel: "/k", QMPSocket: "/q", ConsoleLog: "/c", Volumes: []Drive{{FD: 1}}},
		"stdio fd as the tap":  {Kernel: "/k", QMPSocket: "/q", ConsoleLog: "/c", TapFD: 2},
	} {
		if _, err := bad.Args(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestArgsInvalid(t *testing.T) {
	ok := Config{Kernel: "/k", QMPSocket: "/q", ConsoleLog: "/c"}
	for name, mut := range map[string]func(*Config){
		"no kernel":        func(c *Config) { c.Kernel = "" },
		"no qmp":           func(c *Config) { c.QMPSocket = "" },
		"no console":       func(c *Config) { c.ConsoleLog = "" },
		"comma injection":  func(c *Config) { c.Disk = "/img,format=qcow2" },
		"relative kernel":  func(c *Config) { c.Kernel = "vmlinux" },
		"tiny memory":      func(c *Config) { c.MemoryMiB = 8 },
		"negative cpus":    func(c *Config) { c.CPUs = -1 },
		"comma in channel": func(c *Config) { c.Channel = "/s,server=off" },
		"comma in console": func(c *Config) { c.ConsoleLog = "/log,append=on" },
	} {
		c := ok
		mut(&c)
		if _, err := c.Args(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Args = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// fakeQMP is a QMP server on a unix socket that behaves like QEMU's for
// the commands the client uses: greeting, capabilities negotiation
// required first, events interleaved with answers, errors for unknown
// commands, and quit closing the connection.
type fakeQMP struct {
	t        *testing.T
	sock     string
	mu       sync.Mutex
	received []string
	status   string
}

func newFakeQMP(t *testing.T) *fakeQMP {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp") // short path: unix socket names are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeQMP{t: t, sock: filepath.Join(dir, "qmp.sock"), status: "running"}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeQMP) serve(c net.Conn) {
	defer c.Close()
	send := func(v any) {
		b, _ := json.Marshal(v)
		c.Write(append(b, '\n'))
	}
	event := func(name string) {
		send(map[string]any{"event": name, "timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 5}})
	}
	send(map[string]any{"QMP": map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 18}, "package": "Debian 1:7.2+dfsg-7"},
		"capabilities": []string{"oob"},
	}})
	negotiated := false
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var req struct {
			Execute string `json:"execute"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			send(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "JSON parse error"}})
			continue
		}
		f.mu.Lock()
		f.received = append(f.received, req.Execute)
		f.mu.Unlock()
		if !negotiated && req.Execute != "qmp_capabilities" {
			send(map[string]any{"error": map[string]string{"class": "CommandNotFound",
				"desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}})
			continue
		}
		switch req.Execute {
		case "qmp_capabilities":
			negotiated = true
			send(map[string]any{"return": map[string]any{}})
		case "query-status":
			event("RTC_CHANGE") // an event before the answer must be skipped
			f.mu.Lock()
			st := f.status
			f.mu.Unlock()
			send(map[string]any{"return": map[string]any{"status": st, "running": st == "running", "singlestep": false}})
		case "system_powerdown":
			send(map[string]any{"return": map[string]any{}})
			event("POWERDOWN")
		case "quit":
			send(map[string]any{"return": map[string]any{}})
			event("SHUTDOWN")
			return
		case "hang":
			// never answers
		default:
			send(map[string]any{"error": map[string]string{"class": "CommandNotFound",
				"desc": "The command " + req.Execute + " has not been found"}})
		}
	}
}

func TestQMP(t *testing.T) {
	f := newFakeQMP(t)
	ctx := t.Context()
	q, err := DialQMP(ctx, f.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if v := q.Version(); v != (Version{Major: 7, Minor: 2, Micro: 18, Package: "Debian 1:7.2+dfsg-7"}) {
		t.Errorf("version = %+v", v)
	}
	st, err := q.Status(ctx)
	if err != nil || st != (RunStatus{Status: "running", Running: true}) {
		t.Fatalf("status = %+v, %v", st, err)
	}
	if err := q.Powerdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The POWERDOWN event arrives after the answer; the next command reads
	// past it.
	var qerr *QMPError
	if err := q.Execute(ctx, "query-bogus", nil, nil); !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" || qerr.Command != "query-bogus" {
		t.Errorf("unknown command = %v, want a CommandNotFound QMPError", err)
	}
	var names []string
	for _, ev := range q.Events() {
		names = append(names, ev.Event)
	}
	if diff := cmp.Diff([]string{"RTC_CHANGE", "POWERDOWN"}, names); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if err := q.Quit(ctx); err != nil {
		t.Errorf("quit = %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if diff := cmp.Diff([]string{"qmp_capabilities", "query-status", "system_powerdown", "query-bogus", "quit"}, f.received); diff != "" {
		t.Errorf("commands sent (-want +got):\n%s", diff)
	}
}

func TestQMPContext(t *testing.T) {
	f := newFakeQMP(t)
	q, err := DialQMP(t.Context(), f.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := q.Execute(ctx, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging command = %v, want DeadlineExceeded", err)
	}
	// The stream may now be out of step: the client refuses to go on.
	if _, err := q.Status(t.Context()); err == nil {
		t.Error("command after a cut-off command succeeded")
	}
	if d := time.Since(start); d > 30*time.Second { // a hang, not a slow machine
		t.Errorf("cancellation took %v", d)
	}
}

func TestQMPNotQMP(t *testing.T) {
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("SSH-2.0-OpenSSH\n"))
			c.Close()
		}
	}()
	if _, err := DialQMP(t.Context(), sock); err == nil || !strings.Contains(err.Error(), "greeting") {
		t.Errorf("dial non-QMP = %v, want a greeting error", err)
	}
	if _, err := DialQMP(t.Context(), filepath.Join(dir, "missing")); err == nil {
		t.Error("dial missing socket succeeded")
	}
}

// TestRealQEMUPaused runs the real VMM, when installed, with the generated
// command line, paused before the first guest instruction (-S: the kernel
// is loaded but never runs). It proves that QEMU accepts every option and
// that the QMP client speaks real QMP; it does not prove a guest boots.
func TestRealQEMUPaused(t *testing.T) {
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("%s not installed (apt-get install qemu-system-x86): %v", DefaultBinary, err)
	}
	kernel := os.Getenv("RUNG_TEST_GUEST_KERNEL")
	if kernel == "" {
		// The guest kernel the vm tier itself would boot: the host may run
		// another (this machine runs 6.18 and has Debian's 6.1 in /boot).
		if k, err := guest.FindKernel("/", ""); err == nil {
			kernel = k.Image
		}
	}
	if kernel == "" {
		t.Skip("no guest kernel to hand to QEMU (set RUNG_TEST_GUEST_KERNEL, or install a linux-image package)")
	}
	dir, err := os.MkdirTemp("", "rung-vm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c := Config{Kernel: kernel, QMPSocket: filepath.Join(dir, "q.sock"), ConsoleLog: filepath.Join(dir, "console.log"), Paused: true}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m, err := Start(ctx, c)
	if err != nil {
		// KVM that cannot run a vCPU (nested virtualization without the
		// needed MSRs, as on this project's development machines) aborts
		// the VMM even before the guest runs. The command line is then
		// checked under TCG, which says nothing about the vm tier.
		t.Logf("with KVM: %v", err)
		c.NoKVM = true
		if m, err = Start(ctx, c); err != nil {
			t.Fatalf("start under TCG: %v", err)
		}
	}
	st, err := m.QMP().Status(ctx)
	if err != nil || st.Status != "prelaunch" || st.Running {
		t.Errorf("status = %+v, %v; want prelaunch", st, err)
	}
	t.Logf("qemu %+v (kvm %v), status %+v", m.QMP().Version(), !c.NoKVM, st)
	if err := m.Shutdown(ctx, 0); err != nil {
		t.Errorf("shutdown: %v", err)
	}

}

func uname(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
