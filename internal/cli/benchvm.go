package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/uidrange"
)

// benchVM is the vm tier's part of `rung bench runtime`.
func benchVM(cmd *cobra.Command, n int, allowEmulated bool, output string) error {
	ctx := cmd.Context()
	work, err := os.MkdirTemp("", "rung-bench-vm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// Replicas reach their root as the tenant's uids.
	if err := os.Chmod(work, 0o711); err != nil {
		return err
	}
	r := uidrange.Probe()
	rootfs := filepath.Join(work, "rootfs")
	if err := image.BusyboxRoot(rootfs); err != nil {
		return fmt.Errorf("bench vm: busybox root (install busybox-static): %w", err)
	}
	if err := uidrange.Shift(rootfs, r); err != nil {
		return err
	}
	spec, err := bundle.New(bundle.WithRootfs(rootfs), bundle.WithUserNamespace(r),
		bundle.WithProcess([]string{"/bin/sleep", "3600"}, []string{"PATH=/bin"}, "/"), bundle.WithUser(65534, 65534),
		bundle.WithResources(1000, 256<<20, 128), bundle.WithCgroupsPath(fmt.Sprintf("/rung-bench/vm-%d", os.Getpid()))) // two benches at once must not share a cgroup
	if err != nil {
		return err
	}
	if err := bundle.Write(work, spec); err != nil {
		return err
	}
	d, err := microvm.New(microvm.Options{Dir: filepath.Join(work, "vm"), AllowEmulated: allowEmulated})
	if err != nil {
		return err
	}
	errw := cmd.ErrOrStderr()
	res, err := d.Bench(ctx, work, n, func(path string, i int, took time.Duration) {
		if output == "text" && isTerminal(errw) {
			fmt.Fprintf(errw, "\rvm %s %d/%d: %v   ", path, i+1, n, took.Round(time.Millisecond))
		}
	})
	if output == "text" && isTerminal(errw) {
		fmt.Fprint(errw, "\r\033[K")
	}
	if err != nil {
		return err
	}
	if output == "json" {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	printBenchVM(cmd.OutOrStdout(), res, loadAvg())
	return nil
}

// printBenchVM writes the vm tier's table.
func printBenchVM(w io.Writer, r microvm.BenchResult, load string) {
	accel := "KVM"
	if r.Emulated {
		accel = "TCG emulation (--allow-emulated-vm; not a security boundary)"
	}
	fmt.Fprintf(w, "\nvm tier: boot-to-exec (VMM launched → workload runs), %d runs per path, interleaved; %s, guest kernel %s, %d MiB guest, load %s (goal: rung ≤ %.1f× raw)\n",
		r.Iterations, accel, r.Kernel, r.GuestMiB, load, microvm.BenchGoal)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tRUNG MEDIAN\tRAW MEDIAN\tRATIO\tGOAL\tRUNG QEMU RSS\tRAW QEMU RSS")
	goal := "met"
	if r.Ratio > microvm.BenchGoal {
		goal = "missed"
	}
	fmt.Fprintf(tw, "vm\t%s\t%s\t%.2f\t%s\t%s\t%s\n", benchMs(r.RungMedian), benchMs(r.RawMedian), r.Ratio, goal,
		benchMiB(r.RungRSS), benchMiB(r.RawRSS))
	tw.Flush()
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
