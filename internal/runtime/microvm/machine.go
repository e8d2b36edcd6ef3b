package microvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/runtime"
)

// Machine is one VMM process started directly (not jailed) and its QMP
// connection: the raw peer of `rung bench runtime`, and the check that
// QEMU accepts Config's command line. Replicas run through Driver.
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

// KVMUsable reports why this machine can't run KVM guests (nil when it
// can).
func KVMUsable() error { return checkKVM() }

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

func tail(b []byte) string {
	if len(b) > 400 {
		b = b[len(b)-400:]
	}
	return string(b)
}
