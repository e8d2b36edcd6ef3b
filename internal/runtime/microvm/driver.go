package microvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// New opens the driver's directory and adopts the VMs a previous process
// of this driver (a killed agent) left running, reconnecting their
// channels; one it can't adopt is stopped and reported stopped with an
// unknown exit, and the agent starts it again (adopt.go).
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
	d.adoptOrSweep()
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
	disk            string // the shared read-only root disk
	spec            *specs.Spec
	cmd             *exec.Cmd
	pid, pidfd      int // an adopted VMM (cmd is nil): its PID and a pidfd to it
	gate            *os.File
	cg              *cgroup
	created         time.Time
	guest           guestDevices // what the guest's init mounts and configures

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
	// Disk is the shared root disk the VM boots (kept while it runs).
	Disk string `json:"disk,omitempty"`
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
	// Volumes and the network (devices.go): opened here, inherited by
	// QEMU; the volumes' mount points are made before the root disk.
	dv, err := openDevices(spec, rootfs)
	if err != nil {
		return err
	}
	defer dv.close() // QEMU's jail holds its own copies once started
	v.guest = guestDevices{volumes: dv.volumes, idmap: dv.idmap, net: dv.net}
	disk, err := d.rootDisk(ctx, rootfs, spec.Linux, uid, gid)
	if err != nil {
		return err
	}
	v.disk = disk
	cfg := Config{
		Binary: d.boot.binary, Kernel: filepath.Join(jail.VMDir, filepath.Base(d.boot.kernel)),
		Initrd:    filepath.Join(jail.VMDir, filepath.Base(d.boot.initrd)),
		MemoryMiB: lim.GuestMiB, CPUs: lim.CPUs,
		Disk: filepath.Join(jail.VMDir, filepath.Base(disk)), ReadOnlyDisk: true,
		Channel:    filepath.Join(jail.RunDir, "channel.sock"),
		QMPSocket:  filepath.Join(jail.RunDir, "qmp.sock"),
		ConsoleLog: filepath.Join(jail.RunDir, "console.log"),
		NoKVM:      !d.boot.kvm,
		Volumes:    dv.drives, TapFD: dv.tapFD,
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
	cmd.ExtraFiles = append([]*os.File{gateR}, dv.files...) // fds 3, 4…
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		// No parent-death signal: it follows the forking thread, not this
		// process, and Go ends a thread whenever a goroutine locked to it
		// returns (nodenet's namespace switches, for one, between this
		// Create and Start), which killed parked jails at random. A parked
		// jail exits when the gate's write end closes (the agent died).
		Setsid: true,
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
		UID: uid, Cgroup: spec.Linux.CgroupsPath, Emul: !d.boot.kvm, Limits: lim, Disk: disk,
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
	w, err := logfile.Create(filepath.Join(d.logDir(v.id), runtime.CurrentLog), d.opt.LogMaxSize)
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
	d.finish(v, v.cmd.Wait())
}

// finish records how the replica ended once its VMM exited (werr).
func (d *Driver) finish(v *vm, werr error) {
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
	if v.pidfd > 0 {
		_ = syscall.Close(v.pidfd)
		v.pidfd = -1
	}
	close(v.done)
}
