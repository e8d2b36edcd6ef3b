package microvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/logfile"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm/channel"
	"rung.dev/rung/internal/runtime/microvm/guest"
	"rung.dev/rung/internal/runtime/microvm/jail"
)

// Errors of the vm driver, besides runtime's.
var (
	// ErrBootTimeout: the guest's init did not report within the boot
	// timeout; the VM was stopped.
	ErrBootTimeout = errors.New("guest did not report (boot timeout)")
	// ErrGuest: the guest's init could not run the workload.
	ErrGuest = errors.New("guest init failed")
)

// Options configure the vm driver.
type Options struct {
	// Dir holds the driver's state, its replicas' disks, run directories
	// and logs (DATA/runtimes/vm).
	Dir string
	// Binary is the VMM (default qemu-system-x86_64 from PATH).
	Binary string
	// Kernel is the guest kernel (vmlinuz-RELEASE, with its modules under
	// /lib/modules/RELEASE); default the newest /boot/vmlinuz-*.
	Kernel string
	// Init is the rung-vm binary (guest init and QEMU jail); default
	// rung-vm next to the running executable, else in PATH.
	Init string
	// AllowEmulated runs guests under TCG when KVM is missing: for tests
	// only, it is no security boundary (--allow-emulated-vm).
	AllowEmulated bool
	// BootTimeout bounds a boot until the guest's init reports; default
	// 30s with KVM, 300s under TCG (a loaded CI machine).
	BootTimeout time.Duration
	// MaxDiskMiB caps a replica's root disk (default 4096).
	MaxDiskMiB int64
	Logger     *slog.Logger
	LogMaxSize int64
}

// MinGuestMiB is the smallest guest: the distribution kernel, the
// unpacked initramfs and init take about 50 MiB of it (a 96 MiB guest
// reports 46 MiB MemTotal), so a smaller limit is raised to this.
const MinGuestMiB = 128

// Overheads the VMM adds to the guest's memory in the replica's cgroup:
// QEMU's own heap, its libraries, device buffers and, under TCG, the
// translation cache (docs/vm.md has the measurements).
const (
	OverheadKVM = 64 << 20
	OverheadTCG = 160 << 20
)

// Driver runs each replica in its own QEMU machine. It implements
// runtime.Driver.
type Driver struct {
	opt Options
	log *slog.Logger

	mu  sync.Mutex
	vms map[string]*vm

	detectMu sync.Mutex
	detected *runtime.Availability
	boot     bootFiles
}

// bootFiles are the kernel, initramfs and accelerator every guest of this
// driver boots with, found by Detect.
type bootFiles struct {
	binary, kernel, initrd string
	release                string
	kvm                    bool
}

// New opens the driver's directory and stops whatever VMM a previous
// process of this driver left running (QEMU dies with its agent by
// itself; this catches one that didn't): the guest's channel lived in
// that process, so its replicas are reported stopped with an unknown exit
// and the agent starts them again.
func New(o Options) (*Driver, error) {
	if o.Dir == "" {
		return nil, errors.New("vm driver: no directory")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxDiskMiB == 0 {
		o.MaxDiskMiB = 4096
	}
	for _, d := range []string{o.Dir, filepath.Join(o.Dir, "logs"), filepath.Join(o.Dir, "vms")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("vm driver: %w", err)
		}
	}
	d := &Driver{opt: o, log: o.Logger, vms: map[string]*vm{}}
	d.sweep()
	return d, nil
}

// Open opens a driver's directory only to read its replicas' state (rung
// verify): it stops nothing.
func Open(dir string) (*Driver, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("vm driver: %w", err)
	}
	return &Driver{opt: Options{Dir: dir}, log: slog.New(slog.DiscardHandler), vms: map[string]*vm{}}, nil
}

// Emulated reports whether this driver runs guests under TCG.
func (d *Driver) Emulated(ctx context.Context) bool {
	a := d.Detect(ctx)
	return a.Available && !d.boot.kvm
}

// Detect reports whether this node can run the vm tier, failing closed in
// this order: no VMM binary; no KVM (unless emulation is allowed); no guest
// kernel, or one without the modules the guest needs; no rung-vm init. The
// result is cached.
func (d *Driver) Detect(ctx context.Context) runtime.Availability {
	d.detectMu.Lock()
	defer d.detectMu.Unlock()
	if d.detected == nil {
		a, b := d.detect()
		d.detected, d.boot = &a, b
	}
	return *d.detected
}

func (d *Driver) detect() (runtime.Availability, bootFiles) {
	a := runtime.Availability{Tier: "vm"}
	var b bootFiles
	bin := d.opt.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		a.Reason = fmt.Sprintf("no %s binary (apt-get install qemu-system-x86): %v", bin, err)
		return a, b
	}
	a.Runtime, b.binary = path, path
	if out, err := exec.Command(path, "--version").Output(); err == nil {
		a.Version = strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "QEMU emulator version ")
	}
	kvmErr := checkKVM()
	b.kvm = kvmErr == nil
	if !b.kvm && !d.opt.AllowEmulated {
		a.Reason = fmt.Sprintf("%v: no hardware virtualization (--allow-emulated-vm runs the tier under TCG emulation, for tests only)", kvmErr)
		return a, b
	}
	k, err := guest.FindKernel("/", d.opt.Kernel)
	if err != nil {
		a.Reason = err.Error()
		return a, b
	}
	init, err := FindInit(d.opt.Init)
	if err != nil {
		a.Reason = err.Error()
		return a, b
	}
	initrd, err := guest.BuildInitramfs(filepath.Join(d.opt.Dir, "guest"), k, init)
	if err != nil {
		a.Reason = err.Error()
		return a, b
	}
	b.kernel, b.initrd, b.release = k.Image, initrd, k.Release
	a.Available = true
	if b.kvm {
		a.Reason = "KVM; guest kernel " + k.Release
	} else {
		a.Reason = "EMULATED (TCG, --allow-emulated-vm): for tests only, NOT a security boundary; guest kernel " + k.Release
	}
	return a, b
}

// FindInit returns the rung-vm binary: path if set, else rung-vm next to
// this executable, else in PATH.
func FindInit(path string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("rung-vm init %s: %w", path, err)
		}
		return path, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "rung-vm")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("rung-vm"); err == nil {
		return filepath.Abs(p)
	}
	return "", errors.New("no rung-vm binary next to rung or in PATH (make build builds bin/rung-vm)")
}

// vm is one replica's machine.
type vm struct {
	id, bundle, dir string
	spec            *specs.Spec
	cmd             *exec.Cmd
	gate            *os.File
	cg              *cgroup
	created         time.Time

	mu      sync.Mutex
	status  runtime.Status
	conn    net.Conn
	hello   channel.Hello
	exit    *runtime.Exit
	exitErr error
	killed  syscall.Signal

	stdout, stderr io.Writer
	closers        []io.Closer
	done           chan struct{} // closed once QEMU exited and the exit is known
	frames         chan struct{} // closed when readFrames ended; nil before the workload runs
	wmu            sync.Mutex    // one frame at a time to the guest
	execs          map[uint32]*execReq
	nextExec       uint32
}

// record is what a replica's state.json keeps, for a later process of
// the driver (rung verify, an agent after a restart).
type record struct {
	ID      string        `json:"id"`
	Pid     int           `json:"pid"`
	Start   uint64        `json:"start"` // the process's start time, to tell a reused PID
	Bundle  string        `json:"bundle"`
	Created time.Time     `json:"created"`
	UID     uint32        `json:"uid"`
	Cgroup  string        `json:"cgroup"`
	Emul    bool          `json:"emulated"`
	Hello   channel.Hello `json:"guest"`
	Limits  Limits        `json:"limits"`
	// Owner is the driver's process (and its start time): a VMM whose
	// owner is gone is a leftover.
	Owner      int    `json:"owner"`
	OwnerStart uint64 `json:"ownerStart"`
}

// Status is what a replica's state file says, for rung verify (another
// process than the agent that runs the VM).
type Status struct {
	ID     string
	Bundle string
	// Pid is the VMM's host PID while it runs, else 0.
	Pid      int
	UID      uint32
	Cgroup   string
	Emulated bool
	// Guest is what the guest's init reported: its kernel.
	Guest  channel.Hello
	Limits Limits
}

// Status reads replica id's state file.
func (d *Driver) Status(id string) (Status, error) {
	rec, err := d.readRecord(id)
	if err != nil {
		return Status{}, err
	}
	s := Status{ID: id, Bundle: rec.Bundle, UID: rec.UID, Cgroup: rec.Cgroup, Emulated: rec.Emul, Guest: rec.Hello, Limits: rec.Limits}
	if pid, ok := d.Running(id); ok {
		s.Pid = pid
	}
	return s, nil
}

// Limits are a VM's sizes: what the guest gets and its cgroup allows.
type Limits struct {
	GuestMiB  int    `json:"guestMiB"`
	CPUs      int    `json:"cpus"`
	CgroupMem int64  `json:"cgroupMemory"`
	CPUQuota  int64  `json:"cpuQuota"`
	CPUPeriod uint64 `json:"cpuPeriod"`
	PIDs      int64  `json:"pids"`
}

func (d *Driver) vmDir(id string) string  { return filepath.Join(d.opt.Dir, "vms", id) }
func (d *Driver) logDir(id string) string { return filepath.Join(d.opt.Dir, "logs", id) }

func (d *Driver) get(id string) (*vm, error) {
	if !validID(id) {
		return nil, fmt.Errorf("vm %q: %w", id, runtime.ErrInvalidID)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vms[id]
	if !ok {
		return nil, fmt.Errorf("vm %s: %w", id, runtime.ErrNotFound)
	}
	return v, nil
}

// Create builds the replica's disk from the bundle's rootfs, its cgroup,
// and the jailed VMM process, held before QEMU runs: its namespaces exist
// (a network plugin may add a tap device to its network namespace) and it
// is in the cgroup before it allocates guest memory.
func (d *Driver) Create(ctx context.Context, id, bundleDir string, stdio runtime.IO) (err error) {
	if !validID(id) {
		return fmt.Errorf("vm create %q: %w", id, runtime.ErrInvalidID)
	}
	if a := d.Detect(ctx); !a.Available {
		return fmt.Errorf("vm create %s: %w", id, a.Err())
	}
	d.mu.Lock()
	if _, ok := d.vms[id]; ok {
		d.mu.Unlock()
		return fmt.Errorf("vm create %s: %w", id, runtime.ErrExists)
	}
	v := &vm{id: id, bundle: bundleDir, dir: d.vmDir(id), status: runtime.Creating, done: make(chan struct{}), created: time.Now()}
	d.vms[id] = v
	d.mu.Unlock()
	defer func() {
		if err != nil {
			d.cleanup(v)
			d.mu.Lock()
			delete(d.vms, id)
			d.mu.Unlock()
			err = fmt.Errorf("vm create %s: %w", id, err)
		}
	}()
	spec, err := bundle.Read(bundleDir)
	if err != nil {
		return err
	}
	v.spec = spec
	if spec.Process == nil || len(spec.Process.Args) == 0 || spec.Root == nil || spec.Linux == nil {
		return errors.New("bundle has no process, root or linux section")
	}
	uid, gid, err := hostIDs(spec)
	if err != nil {
		return err
	}
	lim := limitsOf(spec, !d.boot.kvm)
	_ = os.RemoveAll(v.dir)
	if err := os.MkdirAll(filepath.Join(v.dir, "jail"), 0o711); err != nil {
		return err
	}
	run := filepath.Join(v.dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		return err
	}
	if err := os.Chown(run, int(uid), int(gid)); err != nil {
		return err
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundleDir, rootfs)
	}
	disk := filepath.Join(v.dir, "disk.img")
	if err := makeDisk(ctx, rootfs, disk, spec.Linux, d.opt.MaxDiskMiB); err != nil {
		return err
	}
	if err := os.Chown(disk, int(uid), int(gid)); err != nil {
		return err
	}
	if err := os.Chmod(disk, 0o400); err != nil {
		return err
	}
	cfg := Config{
		Binary: d.boot.binary, Kernel: filepath.Join(jail.VMDir, filepath.Base(d.boot.kernel)),
		Initrd:    filepath.Join(jail.VMDir, filepath.Base(d.boot.initrd)),
		MemoryMiB: lim.GuestMiB, CPUs: lim.CPUs,
		Disk: filepath.Join(jail.VMDir, "disk.img"), ReadOnlyDisk: true,
		Channel:    filepath.Join(jail.RunDir, "channel.sock"),
		QMPSocket:  filepath.Join(jail.RunDir, "qmp.sock"),
		ConsoleLog: filepath.Join(jail.RunDir, "console.log"),
		NoKVM:      !d.boot.kvm,
	}
	qargs, err := cfg.Args()
	if err != nil {
		return err
	}
	init, err := FindInit(d.opt.Init)
	if err != nil {
		return err
	}
	js := jail.Spec{Root: filepath.Join(v.dir, "jail"), Run: run, Files: []string{d.boot.kernel, d.boot.initrd, disk},
		KVM: d.boot.kvm, UID: uid, GID: gid, Args: qargs}
	cg, err := newCgroup(spec.Linux.CgroupsPath, lim)
	if err != nil {
		return err
	}
	v.cg = cg
	if err := d.openOutput(v, stdio); err != nil {
		return err
	}
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer gateR.Close()
	vmmLog, err := os.OpenFile(filepath.Join(v.dir, "vmm.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		gateW.Close()
		return err
	}
	defer vmmLog.Close()
	cmd := exec.Command(init, js.CommandArgs()...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, vmmLog, vmmLog
	cmd.ExtraFiles = []*os.File{gateR}
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
		Setsid:     true,
	}
	if err := cmd.Start(); err != nil {
		gateW.Close()
		return fmt.Errorf("start the vmm jail: %w", err)
	}
	v.cmd, v.gate = cmd, gateW
	go d.reap(v)
	if err := cg.add(cmd.Process.Pid); err != nil {
		return err
	}
	rec := record{ID: id, Pid: cmd.Process.Pid, Start: startTime(cmd.Process.Pid), Bundle: bundleDir, Created: v.created,
		UID: uid, Cgroup: spec.Linux.CgroupsPath, Emul: !d.boot.kvm, Limits: lim,
		Owner: os.Getpid(), OwnerStart: startTime(os.Getpid())}
	if err := d.writeRecord(rec); err != nil {
		return err
	}
	v.mu.Lock()
	v.status = runtime.Created
	v.mu.Unlock()
	return nil
}

// openOutput points the replica's stdout and stderr at stdio's writers or
// at its log.
func (d *Driver) openOutput(v *vm, stdio runtime.IO) error {
	v.stdout, v.stderr = stdio.Stdout, stdio.Stderr
	if v.stdout != nil && v.stderr != nil {
		return nil
	}
	if err := os.MkdirAll(d.logDir(v.id), 0o700); err != nil {
		return err
	}
	w, err := logfile.Create(filepath.Join(d.logDir(v.id), "current.log"), d.opt.LogMaxSize)
	if err != nil {
		return err
	}
	out, errw := w.Stream(logfile.Stdout), w.Stream(logfile.Stderr)
	v.closers = append(v.closers, out, errw, w)
	if v.stdout == nil {
		v.stdout = out
	}
	if v.stderr == nil {
		v.stderr = errw
	}
	return nil
}

// reap waits for the VMM and records how the replica ended.
func (d *Driver) reap(v *vm) {
	werr := v.cmd.Wait()
	v.mu.Lock()
	frames := v.frames
	v.mu.Unlock()
	if frames != nil {
		// Frames QEMU flushed before it exited are read by readFrames,
		// which sets the exit; give it the rest of the stream.
		select {
		case <-frames:
		case <-time.After(5 * time.Second):
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.exit == nil {
		switch {
		case v.killed != 0:
			v.exit = &runtime.Exit{Code: 128 + int(v.killed), Signal: v.killed, At: time.Now()}
		case v.exitErr == nil:
			v.exitErr = fmt.Errorf("%w: the vmm exited (%v) before the guest reported an exit; %s", ErrGuest, werr, d.consoleTail(v))
			v.exit = &runtime.Exit{Code: 128 + int(syscall.SIGKILL), Signal: syscall.SIGKILL, At: time.Now()}
		default:
			v.exit = &runtime.Exit{Code: 128 + int(syscall.SIGKILL), Signal: syscall.SIGKILL, At: time.Now()}
		}
	}
	v.status = runtime.Stopped
	for _, c := range v.closers {
		_ = c.Close()
	}
	v.closers = nil
	if v.conn != nil {
		_ = v.conn.Close()
	}
	close(v.done)
}

// Start lets the jail exec QEMU, connects to the guest's channel, waits for
// the guest's init, hands it the workload and returns once it runs. A
// guest that does not report within the boot timeout is stopped.
func (d *Driver) Start(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	if v.status != runtime.Created {
		st := v.status
		v.mu.Unlock()
		return fmt.Errorf("vm start %s: %s: %w", id, st, runtime.ErrNotRunning)
	}
	v.status = runtime.Running
	v.mu.Unlock()
	if _, err := v.gate.Write([]byte{'G'}); err != nil {
		return fmt.Errorf("vm start %s: release the jail: %w", id, err)
	}
	v.gate.Close()
	timeout := d.opt.BootTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
		if !d.boot.kvm {
			timeout = 300 * time.Second
		}
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.handshake(bctx, v); err != nil {
		d.kill(v, syscall.SIGKILL)
		<-v.done
		if bctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: no word from the guest's init within %v; %s", ErrBootTimeout, timeout, d.consoleTail(v))
		}
		return fmt.Errorf("vm start %s: %w", id, err)
	}
	return nil
}

// handshake connects, reads Hello, sends the workload and reads Started.
func (d *Driver) handshake(ctx context.Context, v *vm) error {
	sock := filepath.Join(v.dir, "run", "channel.sock")
	var conn net.Conn
	for {
		var dl net.Dialer
		c, err := dl.DialContext(ctx, "unix", sock)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-v.done:
			return fmt.Errorf("%w: the vmm exited: %s", ErrGuest, d.vmmTail(v))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	v.mu.Lock()
	v.conn = conn
	v.mu.Unlock()
	k, p, err := channel.Read(conn)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: channel: %v; %s", ErrGuest, err, d.consoleTail(v))
	}
	if k == channel.KindError {
		return fmt.Errorf("%w: %s", ErrGuest, p)
	}
	if k != channel.KindHello || json.Unmarshal(p, &v.hello) != nil {
		return fmt.Errorf("%w: first frame %#x, want hello", ErrGuest, k)
	}
	if err := channel.WriteJSON(conn, channel.KindConfig, configOf(v.spec)); err != nil {
		return fmt.Errorf("send the workload: %w", err)
	}
	k, p, err = channel.Read(conn)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: channel: %v", ErrGuest, err)
	}
	switch k {
	case channel.KindStarted:
	case channel.KindError:
		msg := string(p)
		if strings.Contains(msg, "not found") {
			return fmt.Errorf("%w: %s", runtime.ErrExecNotFound, msg)
		}
		return fmt.Errorf("%w: %s", ErrGuest, msg)
	default:
		return fmt.Errorf("%w: frame %#x, want started", ErrGuest, k)
	}
	if rec, err := d.readRecord(v.id); err == nil {
		rec.Hello = v.hello
		_ = d.writeRecord(rec)
	}
	frames := make(chan struct{})
	v.mu.Lock()
	v.frames = frames
	v.mu.Unlock()
	go d.readFrames(v, conn, frames)
	return nil
}

// readFrames copies the workload's output and takes its exit.
func (d *Driver) readFrames(v *vm, conn net.Conn, frames chan struct{}) {
	defer close(frames)
	for {
		k, p, err := channel.Read(conn)
		if err != nil {
			return
		}
		switch k {
		case channel.KindStdout:
			_, _ = v.stdout.Write(p)
		case channel.KindStderr:
			_, _ = v.stderr.Write(p)
		case channel.KindExit:
			var e channel.Exit
			if json.Unmarshal(p, &e) == nil {
				v.mu.Lock()
				v.exit = &runtime.Exit{Code: e.Code, Signal: syscall.Signal(e.Signal), At: time.Now()}
				v.mu.Unlock()
			}
			return
		case channel.KindError:
			v.mu.Lock()
			v.exitErr = fmt.Errorf("%w: %s", ErrGuest, p)
			v.mu.Unlock()
			return
		case channel.KindExecStdout, channel.KindExecStderr, channel.KindExecExit:
			v.execFrame(k, p)
		}
	}
}

// configOf is the workload the guest runs: the bundle's process.
func configOf(s *specs.Spec) channel.Config {
	p := s.Process
	c := channel.Config{Args: p.Args, Env: p.Env, Cwd: p.Cwd, UID: p.User.UID, GID: p.User.GID, Groups: p.User.AdditionalGids, Hostname: s.Hostname}
	for _, m := range s.Mounts {
		if m.Destination == "/tmp" && m.Type == "tmpfs" {
			for _, o := range m.Options {
				if sz, ok := strings.CutPrefix(o, "size="); ok {
					var n int
					if _, err := fmt.Sscanf(sz, "%dm", &n); err == nil {
						c.TmpMiB = n
					}
				}
			}
		}
	}
	return c
}

// State reports the replica's status; Pid is the VMM's host PID.
func (d *Driver) State(ctx context.Context, id string) (runtime.State, error) {
	v, err := d.get(id)
	if errors.Is(err, runtime.ErrNotFound) {
		// A replica of an earlier process of this driver: its VMM is gone
		// (New swept it), it is stopped.
		if rec, rerr := d.readRecord(id); rerr == nil {
			return runtime.State{ID: id, Status: runtime.Stopped, Bundle: rec.Bundle}, nil
		}
	}
	if err != nil {
		return runtime.State{}, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	st := runtime.State{ID: id, Status: v.status, Bundle: v.bundle}
	if v.status != runtime.Stopped && v.cmd != nil {
		st.Pid = v.cmd.Process.Pid
	}
	return st, nil
}

// Kill sends sig to the workload through the guest's init; SIGKILL (or
// any signal before the guest runs the workload) stops the VM at once.
func (d *Driver) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	v, err := d.get(id)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) {
			if _, rerr := d.readRecord(id); rerr == nil {
				return fmt.Errorf("vm kill %s: %w", id, runtime.ErrNotRunning)
			}
		}
		return err
	}
	v.mu.Lock()
	st, conn, started := v.status, v.conn, v.frames != nil
	v.mu.Unlock()
	if st == runtime.Stopped {
		return fmt.Errorf("vm kill %s: %w", id, runtime.ErrNotRunning)
	}
	if sig == syscall.SIGKILL || !started || conn == nil {
		d.kill(v, sig)
		return nil
	}
	if err := v.write(channel.KindSignal, []byte{byte(sig)}); err != nil {
		d.kill(v, sig)
	}
	return nil
}

// kill stops the VMM with SIGKILL and records sig as what ended the
// workload.
func (d *Driver) kill(v *vm, sig syscall.Signal) {
	v.mu.Lock()
	if v.killed == 0 {
		v.killed = sig
	}
	v.mu.Unlock()
	if v.gate != nil {
		v.gate.Close() // a jail still waiting exits
	}
	if v.cmd != nil && v.cmd.Process != nil {
		_ = v.cmd.Process.Kill()
	}
}

// Wait blocks until the VM stopped and returns how its workload ended.
func (d *Driver) Wait(ctx context.Context, id string) (runtime.Exit, error) {
	v, err := d.get(id)
	if errors.Is(err, runtime.ErrNotFound) {
		if rec, rerr := d.readRecord(id); rerr == nil {
			return runtime.Exit{At: rec.Created}, fmt.Errorf("vm wait %s: %w", id, runtime.ErrExitUnknown)
		}
	}
	if err != nil {
		return runtime.Exit{}, err
	}
	select {
	case <-v.done:
	case <-ctx.Done():
		return runtime.Exit{}, ctx.Err()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return *v.exit, v.exitErr
}

// Delete stops the VM if it runs and removes its disk, run directory and
// cgroup; its log becomes the previous run's.
func (d *Driver) Delete(ctx context.Context, id string) error {
	v, err := d.get(id)
	if errors.Is(err, runtime.ErrNotFound) {
		if _, rerr := d.readRecord(id); rerr == nil {
			// Another process's VM (or a leftover): its VMM goes first.
			if pid, running := d.Running(id); running {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			d.cleanup(&vm{id: id, dir: d.vmDir(id)})
			return d.retireLog(id)
		}
	}
	if err != nil {
		return err
	}
	d.kill(v, syscall.SIGKILL)
	select {
	case <-v.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.cleanup(v)
	d.mu.Lock()
	delete(d.vms, id)
	d.mu.Unlock()
	return d.retireLog(id)
}

// cleanup removes what Create made (the VMM must be gone).
func (d *Driver) cleanup(v *vm) {
	if v.cmd != nil && v.cmd.Process != nil {
		_ = v.cmd.Process.Kill()
		select {
		case <-v.done:
		case <-time.After(30 * time.Second):
		}
	}
	for _, c := range v.closers {
		_ = c.Close()
	}
	cgPath := ""
	if v.cg != nil {
		cgPath = v.cg.path
	} else if rec, err := d.readRecord(v.id); err == nil {
		cgPath = rec.Cgroup
	}
	if cgPath != "" {
		removeCgroup(cgPath)
	}
	_ = os.RemoveAll(v.dir)
}

func (d *Driver) retireLog(id string) error {
	cur := filepath.Join(d.logDir(id), "current.log")
	prev := filepath.Join(d.logDir(id), "previous.log")
	if _, err := os.Stat(cur); err != nil {
		return nil
	}
	for _, s := range []string{"", ".1"} {
		_ = os.Remove(prev + s)
	}
	for _, s := range []string{".1", ""} {
		if err := os.Rename(cur+s, prev+s); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Logs opens the replica's current log.
func (d *Driver) Logs(ctx context.Context, id string) (io.ReadCloser, error) {
	return d.ReadLogs(ctx, id, logfile.ReadOptions{})
}

// ReadLogs returns the replica's output as it wrote it (see runtime.OCI).
func (d *Driver) ReadLogs(ctx context.Context, id string, o logfile.ReadOptions) (io.ReadCloser, error) {
	if !validID(id) {
		return nil, fmt.Errorf("vm logs %q: %w", id, runtime.ErrInvalidID)
	}
	p := filepath.Join(d.logDir(id), "current.log")
	if o.Previous {
		p = filepath.Join(d.logDir(id), "previous.log")
	}
	rc, err := logfile.Open(ctx, p, o)
	if errors.Is(err, logfile.ErrNoLog) {
		return nil, fmt.Errorf("vm logs %s: %w", id, runtime.ErrNotFound)
	}
	return rc, err
}

// HasLogs reports whether replica id has a log here.
func (d *Driver) HasLogs(id string) bool {
	if !validID(id) {
		return false
	}
	_, err := os.Stat(d.logDir(id))
	return err == nil
}

// PurgeLogs deletes every log of replica id.
func (d *Driver) PurgeLogs(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("vm purge logs %q: %w", id, runtime.ErrInvalidID)
	}
	return os.RemoveAll(d.logDir(id))
}

// Guest returns what the guest's init reported (its kernel), once it ran.
func (d *Driver) Guest(id string) (channel.Hello, error) {
	rec, err := d.readRecord(id)
	if err != nil {
		return channel.Hello{}, err
	}
	return rec.Hello, nil
}

func (d *Driver) consoleTail(v *vm) string {
	b, _ := os.ReadFile(filepath.Join(v.dir, "run", "console.log"))
	return "console: " + strings.TrimSpace(tail(b))
}

func (d *Driver) vmmTail(v *vm) string {
	b, _ := os.ReadFile(filepath.Join(v.dir, "vmm.log"))
	return strings.TrimSpace(tail(b))
}

func (d *Driver) writeRecord(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := filepath.Join(d.vmDir(r.ID), ".state.json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.vmDir(r.ID), "state.json"))
}

func (d *Driver) readRecord(id string) (record, error) {
	var r record
	if !validID(id) {
		return r, fmt.Errorf("vm %q: %w", id, runtime.ErrInvalidID)
	}
	b, err := os.ReadFile(filepath.Join(d.vmDir(id), "state.json"))
	if err != nil {
		return r, fmt.Errorf("vm %s: %w", id, runtime.ErrNotFound)
	}
	if err := json.Unmarshal(b, &r); err != nil || r.ID != id {
		return r, fmt.Errorf("vm %s: corrupt state", id)
	}
	return r, nil
}

// Records lists the replicas this driver's directory holds (rung verify).
func (d *Driver) Records() []string {
	ents, _ := os.ReadDir(filepath.Join(d.opt.Dir, "vms"))
	var out []string
	for _, e := range ents {
		if _, err := d.readRecord(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// sweep kills VMMs whose driving process is gone (another live process,
// an agent on the same directory, keeps its own).
func (d *Driver) sweep() {
	for _, id := range d.Records() {
		rec, _ := d.readRecord(id)
		if rec.Owner > 0 && rec.OwnerStart != 0 && startTime(rec.Owner) == rec.OwnerStart {
			continue
		}
		if rec.Pid > 0 && startTime(rec.Pid) == rec.Start && rec.Start != 0 {
			d.log.Warn("stopping a VMM left by an earlier agent", "replica", id, "pid", rec.Pid)
			_ = syscall.Kill(rec.Pid, syscall.SIGKILL)
		}
	}
}

// Running reports a record's VMM PID when it still runs (for rung verify,
// which is another process than the agent).
func (d *Driver) Running(id string) (int, bool) {
	rec, err := d.readRecord(id)
	if err != nil || rec.Pid == 0 || rec.Start == 0 || startTime(rec.Pid) != rec.Start {
		return 0, false
	}
	return rec.Pid, true
}

// startTime reads a process's start time (field 22 of /proc/PID/stat), 0
// when it is gone.
func startTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	var t uint64
	fmt.Sscan(f[19], &t)
	return t
}

// hostIDs is the replica's user as the host sees it: through the bundle's
// user namespace mapping (the tenant's range). QEMU runs as it, never as
// root.
func hostIDs(s *specs.Spec) (uint32, uint32, error) {
	u := s.Process.User
	m := func(id uint32, maps []specs.LinuxIDMapping) (uint32, bool) {
		for _, x := range maps {
			if id >= x.ContainerID && id < x.ContainerID+x.Size {
				return x.HostID + id - x.ContainerID, true
			}
		}
		return 0, false
	}
	uid, ok1 := m(u.UID, s.Linux.UIDMappings)
	gid, ok2 := m(u.GID, s.Linux.GIDMappings)
	if !ok1 || !ok2 || uid == 0 || gid == 0 {
		return 0, 0, fmt.Errorf("%w: the replica's user %d:%d has no unprivileged host id in the bundle's user namespace mapping", ErrInvalidConfig, u.UID, u.GID)
	}
	return uid, gid, nil
}

// limitsOf sizes the guest and its cgroup from the bundle's resources: the
// guest gets the replica's memory limit as RAM and its CPU limit as vCPUs;
// the cgroup holds the guest plus the VMM's overhead.
func limitsOf(s *specs.Spec, emulated bool) Limits {
	l := Limits{GuestMiB: DefaultMemoryMiB, CPUs: 1, PIDs: 128}
	r := s.Linux.Resources
	if r != nil && r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		l.GuestMiB = int(*r.Memory.Limit >> 20)
	}
	if l.GuestMiB < MinGuestMiB {
		l.GuestMiB = MinGuestMiB
	}
	if r != nil && r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Quota > 0 && *r.CPU.Period > 0 {
		l.CPUQuota, l.CPUPeriod = *r.CPU.Quota, *r.CPU.Period
		l.CPUs = int(math.Ceil(float64(l.CPUQuota) / float64(l.CPUPeriod)))
	}
	over := int64(OverheadKVM)
	if emulated {
		over = OverheadTCG
	}
	l.CgroupMem = int64(l.GuestMiB)<<20 + over
	return l
}

// validID is runtime's rule for IDs: they name paths.
func validID(id string) bool {
	if id == "" || len(id) > 128 || strings.Contains(id, "..") {
		return false
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !ok && (i == 0 || r != '_' && r != '.' && r != '-') {
			return false
		}
	}
	return true
}
