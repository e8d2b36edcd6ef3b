package microvm

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm/channel"
)

// BenchResult is the vm tier's `rung bench runtime` figure: boot-to-exec
// (from launching the VMM to the workload's process running in the
// guest) and the VMM's memory, through rung (disk made from the bundle,
// jail, cgroup, channel) and through the raw qemu-system-x86_64 command
// line booting the same kernel, initramfs and disk, interleaved in one run.
type BenchResult struct {
	Iterations int    `json:"iterations"`
	Emulated   bool   `json:"emulated"`
	Kernel     string `json:"kernel"`
	GuestMiB   int    `json:"guestMiB"`
	// Rung and Raw are the boot-to-exec samples.
	Rung []time.Duration `json:"rung"`
	Raw  []time.Duration `json:"raw"`
	// RungMedian, RawMedian and Ratio (rung / raw; goal ≤ 1.1).
	RungMedian time.Duration `json:"rungMedian"`
	RawMedian  time.Duration `json:"rawMedian"`
	Ratio      float64       `json:"ratio"`
	// RungRSS and RawRSS are the VMM's resident memory once the workload
	// runs (median), beyond the guest's RAM it has touched.
	RungRSS int64 `json:"rungRSS"`
	RawRSS  int64 `json:"rawRSS"`
}

// BenchGoal is issue 16's goal: rung's boot-to-exec at most 1.1× raw.
const BenchGoal = 1.1

// Bench boots the replica of bundleDir n times through the driver and n
// times with the raw command line, interleaved. Its workload should idle
// (sleep): each boot is stopped once the workload runs.
func (d *Driver) Bench(ctx context.Context, bundleDir string, n int, progress func(path string, i int, took time.Duration)) (BenchResult, error) {
	if a := d.Detect(ctx); !a.Available {
		return BenchResult{}, a.Err()
	}
	spec, err := bundle.Read(bundleDir)
	if err != nil {
		return BenchResult{}, err
	}
	lim := limitsOf(spec, !d.boot.kvm)
	res := BenchResult{Iterations: n, Emulated: !d.boot.kvm, Kernel: d.boot.release, GuestMiB: lim.GuestMiB}
	rawDir, err := os.MkdirTemp("", "rung-vm-raw-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(rawDir)
	if err := os.Chmod(rawDir, 0o711); err != nil { // mkfs runs as the tenant's root
		return res, err
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundleDir, rootfs)
	}
	// The root disk is made once, before the timed runs, and both paths
	// boot it: the raw command line boots an existing image, and rung
	// shares one read-only disk per root (diskcache.go), so its timed
	// path includes finding that disk (hashing the root), not making it.
	uid, gid, err := hostIDs(spec)
	if err != nil {
		return res, err
	}
	disk, err := d.rootDisk(ctx, rootfs, spec.Linux, uid, gid)
	if err != nil {
		return res, err
	}
	var rungRSS, rawRSS []int64
	for i := range n {
		id := fmt.Sprintf("bench-vm-%d", i)
		t0 := time.Now()
		if err := d.Create(ctx, id, bundleDir, runtime.IO{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
			return res, err
		}
		err := d.Start(ctx, id)
		took := time.Since(t0)
		if err == nil {
			if st, serr := d.State(ctx, id); serr == nil {
				rungRSS = append(rungRSS, rss(st.Pid))
			}
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		_ = d.Delete(dctx, id)
		cancel()
		if err != nil {
			return res, err
		}
		res.Rung = append(res.Rung, took)
		if progress != nil {
			progress("rung", i, took)
		}
		took, mem, err := d.rawBoot(ctx, rawDir, disk, lim, configOf(spec))
		if err != nil {
			return res, fmt.Errorf("raw qemu: %w", err)
		}
		res.Raw = append(res.Raw, took)
		rawRSS = append(rawRSS, mem)
		if progress != nil {
			progress("raw", i, took)
		}
	}
	res.RungMedian, res.RawMedian = median(res.Rung), median(res.Raw)
	if res.RawMedian > 0 {
		res.Ratio = float64(res.RungMedian) / float64(res.RawMedian)
	}
	res.RungRSS, res.RawRSS = medianInt(rungRSS), medianInt(rawRSS)
	return res, nil
}

// rawBoot runs qemu-system-x86_64 directly (no jail, no cgroup) on the
// same kernel, initramfs and disk, hands the guest the workload over the
// channel, and returns the time until it runs and QEMU's RSS then.
func (d *Driver) rawBoot(ctx context.Context, dir, disk string, lim Limits, wl channel.Config) (time.Duration, int64, error) {
	run, err := os.MkdirTemp(dir, "run-")
	if err != nil {
		return 0, 0, err
	}
	cfg := Config{Kernel: d.boot.kernel, Initrd: d.boot.initrd, MemoryMiB: lim.GuestMiB, CPUs: lim.CPUs,
		Disk: disk, ReadOnlyDisk: true, Channel: filepath.Join(run, "c.sock"), QMPSocket: filepath.Join(run, "q.sock"),
		ConsoleLog: filepath.Join(run, "console.log"), NoKVM: !d.boot.kvm}
	args, err := cfg.Args()
	if err != nil {
		return 0, 0, err
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	cmd := exec.Command(d.boot.binary, args...)
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var conn net.Conn
	for conn == nil {
		var dl net.Dialer
		if c, err := dl.DialContext(bctx, "unix", cfg.Channel); err == nil {
			conn = c
		} else if bctx.Err() != nil {
			return 0, 0, bctx.Err()
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer conn.Close()
	stop := context.AfterFunc(bctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if k, _, err := channel.Read(conn); err != nil || k != channel.KindHello {
		return 0, 0, fmt.Errorf("no hello (%#x): %v", k, err)
	}
	if err := channel.WriteJSON(conn, channel.KindConfig, wl); err != nil {
		return 0, 0, err
	}
	k, p, err := channel.Read(conn)
	if err != nil || k != channel.KindStarted {
		return 0, 0, fmt.Errorf("workload did not start (%#x %s): %v", k, p, err)
	}
	return time.Since(t0), rss(cmd.Process.Pid), nil
}

// rss is a process's VmRSS in bytes (0 when unreadable).
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianInt(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
