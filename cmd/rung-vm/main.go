// Command rung-vm is the vm tier's helper, one small static binary with two
// jobs: on the host, `rung-vm jail` locks QEMU up before exec'ing it (it is
// PID 1 of its own PID namespace, so the subcommand is checked first); and
// as PID 1 of every vm-tier guest, in the initramfs rung builds, it is the
// guest's init.
package main

import (
	"os"
	"runtime"

	"rung.dev/rung/internal/runtime/microvm/jail"
	"rung.dev/rung/internal/runtime/microvm/vminit"
)

// The jail sets QEMU's parent-death signal, a property of one thread, and
// then execs from the thread it runs on: both must be the same thread.
func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "jail" {
		os.Exit(jail.Main(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == vminit.HoldArg && os.Getpid() != 1 {
		vminit.Hold() // the guest init's helper: a user namespace for idmapped volumes
		os.Exit(0)
	}
	if os.Getpid() == 1 {
		vminit.Main()
	}
	os.Stderr.WriteString("rung-vm: the vm tier's guest init and QEMU jail; rung runs it\n")
	os.Exit(2)
}
