package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoSandboxNetwork: the runsc binary can't run a sandbox with gVisor's
// own network stack (--network=sandbox) the way rung runs sandboxes.
var ErrNoSandboxNetwork = errors.New("runsc can't run sandbox networks")

// ProbeSandboxNetwork reports whether the runsc of cfg (Binary) runs a
// sandbox with --network=sandbox as rung runs every sandbox: as root of
// the tenant's user namespace, in a new network namespace that namespace
// owns, with the platform and seccomp flags of the sandbox driver. The
// probe is real, not a version check: it creates and starts such a
// sandbox from a tiny static program that exits 0, waits for that exit
// and deletes it. Debian 12's runsc (20221219) fails it at start (it
// takes the namespace for the host's); a current one passes.
//
// cfg.Dir is the probe's own driver directory (not the node's sandbox
// driver's: that one adopts running replicas); it is removed afterwards.
// Its parent must be searchable by the probe range (0711), as the
// driver's is.
func ProbeSandboxNetwork(ctx context.Context, cfg Config) error {
	cfg.Network = "sandbox"
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	d, err := NewRunsc(cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoSandboxNetwork, err)
	}
	defer func() {
		unmountNullNetNS(d.state)
		_ = os.RemoveAll(cfg.Dir)
	}()
	if d.bin == "" {
		return fmt.Errorf("%w: %v", ErrNoSandboxNetwork, d.binErr)
	}
	if err := d.probeStart(ctx); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoSandboxNetwork, d.bin, err)
	}
	return nil
}

// probeStart runs a sandbox whose program exits 0, and wants that exit.
func (d *OCI) probeStart(ctx context.Context) error {
	exe, err := exitProgram()
	if err != nil {
		return err
	}
	d.sweepProbes(ctx)
	dir, id, err := d.probeBundle(exe)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := d.Create(ctx, id, dir, IO{}); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupWait)
		defer cancel()
		_ = d.Delete(dctx, id)
	}()
	if err := d.Start(ctx, id); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	exit, err := d.Wait(ctx, id)
	if err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	if exit.Code != 0 {
		return fmt.Errorf("the probe program exited %d, want 0", exit.Code)
	}
	return nil
}

// exitProgram is a minimal static ELF executable for this machine that
// calls exit_group(0): the probe needs a program, and no image.
func exitProgram() ([]byte, error) {
	var machine uint16
	var code []byte
	switch goruntime.GOARCH {
	case "amd64":
		machine = 62 // EM_X86_64
		// xor edi,edi; mov eax,231 (exit_group); syscall
		code = []byte{0x31, 0xff, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05}
	case "arm64":
		machine = 183 // EM_AARCH64
		// mov x0,#0; mov x8,#94 (exit_group); svc #0
		code = binary.LittleEndian.AppendUint32(nil, 0xd2800000)
		code = binary.LittleEndian.AppendUint32(code, 0xd2800bc8)
		code = binary.LittleEndian.AppendUint32(code, 0xd4000001)
	default:
		return nil, fmt.Errorf("no probe program for %s", goruntime.GOARCH)
	}
	const base, ehsize, phsize = 0x400000, 64, 56
	size := uint64(ehsize + phsize + len(code))
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* LE */, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, base+ehsize+phsize) // entry
	b = le.AppendUint64(b, ehsize)             // phoff
	b = le.AppendUint64(b, 0)                  // shoff
	b = le.AppendUint32(b, 0)                  // flags
	b = le.AppendUint16(b, ehsize)
	b = le.AppendUint16(b, phsize)
	b = le.AppendUint16(b, 1) // phnum
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 1) // PT_LOAD
	b = le.AppendUint32(b, 5) // R+X
	b = le.AppendUint64(b, 0) // offset
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, size)
	b = le.AppendUint64(b, 0x1000)
	return append(b, code...), nil
}

// unmountNullNetNS removes the bind mounts a current runsc makes of its
// shared empty network namespace at ROOT/null-netns (its --root), which
// would make removing ROOT fail with EBUSY. runsc stacks them when two
// start at once, so unmount until none is left.
func unmountNullNetNS(root string) {
	p := filepath.Join(root, "null-netns")
	for i := 0; i < 64 && unix.Unmount(p, unix.MNT_DETACH) == nil; i++ {
	}
}
