package microvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/runtime"
)

// Machine is one running VMM process and its QMP connection: the skeleton
// of the vm-tier driver. Turning an OCI bundle into a guest (root disk from
// the image, a guest agent that runs the process and reports its exit over
// vsock) needs a bootable guest and is not built yet.
type Machine struct {
	cmd  *exec.Cmd
	qmp  *QMP
	done chan struct{}
	err  error // exit of the VMM, valid after done
}

// Start launches the VMM for c and connects to its QMP socket. The VMM
// outlives ctx, which only bounds the start; stop it with Shutdown.
func Start(ctx context.Context, c Config) (*Machine, error) {
	args, err := c.Args()
	if err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(c.binary())
	if err != nil {
		return nil, fmt.Errorf("start microvm: %w: %w", err, runtime.ErrUnavailable)
	}
	_ = os.Remove(c.QMPSocket)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	// stderr is read only after the VMM exited (Wait has copied it all).
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start microvm: %w", err)
	}
	m := &Machine{cmd: cmd, done: make(chan struct{})}
	go func() { m.err = cmd.Wait(); close(m.done) }()

	// QEMU creates the socket before it runs the guest; poll for it.
	for {
		q, err := DialQMP(ctx, c.QMPSocket)
		if err == nil {
			m.qmp = q
			return m, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("start microvm: vmm exited: %v: %s", m.err, stderr.String())
		case <-ctx.Done():
			m.kill()
			return nil, fmt.Errorf("start microvm: qmp socket %s: %w", c.QMPSocket, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// QMP is the machine's QMP connection.
func (m *Machine) QMP() *QMP { return m.qmp }

// Pid is the VMM's host PID.
func (m *Machine) Pid() int { return m.cmd.Process.Pid }

// Wait blocks until the VMM exits.
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-m.done:
		return m.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown asks the guest to power down, waits up to grace, then quits
// the VMM over QMP, and kills it as a last resort.
func (m *Machine) Shutdown(ctx context.Context, grace time.Duration) error {
	defer m.qmp.Close()
	if err := m.qmp.Powerdown(ctx); err == nil {
		select {
		case <-m.done:
			return nil
		case <-time.After(grace):
		case <-ctx.Done():
		}
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.qmp.Quit(qctx); err == nil {
		select {
		case <-m.done:
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	m.kill()
	return errors.New("microvm: vmm did not quit; killed")
}

func (m *Machine) kill() {
	_ = m.cmd.Process.Kill()
	<-m.done
}

// Probe is how Detect proves that a guest boots: it boots Config (with
// its kernel and usually an initrd) and waits for Marker on the console.
type Probe struct {
	Config Config
	// Marker is a string the guest prints on hvc0 once it runs user space.
	Marker string
	// Timeout bounds the boot; default 30s.
	Timeout time.Duration
}

// Detector probes the vm tier once per process (the result is cached).
type Detector struct {
	probe Probe

	mu       sync.Mutex
	detected *runtime.Availability
}

// NewDetector returns a Detector for p.
func NewDetector(p Probe) *Detector { return &Detector{probe: p} }

// Detect reports whether this node can run the vm tier. It fails closed,
// in this order, with the reason: no VMM binary; /dev/kvm missing or not
// answering the KVM API; no guest kernel or boot marker configured; the
// boot probe did not print its marker. Only a guest that booted and spoke
// makes the tier available. (On the development machine of this project
// there is no qemu binary and no guest kernel, and its /dev/kvm cannot
// boot a guest: the tier is reported unavailable there.)
func (d *Detector) Detect(ctx context.Context) runtime.Availability {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detected == nil {
		a := d.detect(ctx)
		d.detected = &a
	}
	return *d.detected
}

func (d *Detector) detect(ctx context.Context) runtime.Availability {
	c := d.probe.Config
	a := runtime.Availability{Tier: "vm"}
	bin, err := exec.LookPath(c.binary())
	if err != nil {
		a.Reason = fmt.Sprintf("no %s binary: %v", c.binary(), err)
		return a
	}
	a.Runtime = bin
	if !c.NoKVM {
		if err := checkKVM(); err != nil {
			a.Reason = err.Error()
			return a
		}
	}
	if c.Kernel == "" {
		a.Reason = "no guest kernel configured"
		return a
	}
	if d.probe.Marker == "" {
		a.Reason = "no boot probe marker configured"
		return a
	}
	if c.NoKVM {
		a.Reason = "KVM disabled: no hardware virtualization boundary"
		return a
	}
	ver, err := d.boot(ctx)
	a.Version = ver
	if err != nil {
		a.Reason = fmt.Sprintf("boot probe failed: %v", err)
		return a
	}
	a.Available = true
	a.Reason = "booted a guest kernel that printed the probe marker"
	return a
}

// checkKVM opens /dev/kvm and asks its API version (KVM_GET_API_VERSION
// must answer 12).
func checkKVM() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot open /dev/kvm: %w", err)
	}
	defer f.Close()
	const kvmGetAPIVersion = 0xAE00
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil {
		return fmt.Errorf("/dev/kvm: KVM_GET_API_VERSION: %w", err)
	}
	if v != 12 {
		return fmt.Errorf("/dev/kvm: KVM API version %d, want 12", v)
	}
	return nil
}

// boot starts the probe VM and waits for the marker on its console.
func (d *Detector) boot(ctx context.Context) (string, error) {
	timeout := d.probe.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "rung-vm-probe-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	c := d.probe.Config
	c.QMPSocket = filepath.Join(dir, "qmp.sock")
	c.ConsoleLog = filepath.Join(dir, "console.log")
	c.Paused = false
	m, err := Start(ctx, c)
	if err != nil {
		return "", err
	}
	v := m.QMP().Version()
	ver := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
	defer m.Shutdown(context.WithoutCancel(ctx), 0)
	for {
		out, _ := os.ReadFile(c.ConsoleLog)
		if bytes.Contains(out, []byte(d.probe.Marker)) {
			return ver, nil
		}
		select {
		case <-m.done:
			return ver, fmt.Errorf("vmm exited before the marker: %v; console: %q", m.err, tail(out))
		case <-ctx.Done():
			return ver, fmt.Errorf("no marker %q on the console within %v; console: %q", d.probe.Marker, timeout, tail(out))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(b []byte) string {
	if len(b) > 400 {
		b = b[len(b)-400:]
	}
	return string(b)
}
