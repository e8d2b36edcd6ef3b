// Package bench measures what the container and sandbox tiers cost on this
// machine, side by side with the raw runtimes in the same run: the
// start-to-exit latency of /bin/true through rung's driver (bundle.New,
// bundle.Write, runtime.Run) against `runc run` / `runsc run` of the same
// bundle, and the memory of an idle replica. It is `rung bench runtime` and
// the BenchmarkStart* Go benchmarks; it needs root, the runtimes and a
// static busybox.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/uidrange"
)

// ErrUnavailable: a tier cannot be measured here (its runtime or busybox is
// missing).
var ErrUnavailable = errors.New("tier unavailable for the benchmark")

// Tiers that can be benchmarked, with the runtime binary of each.
const (
	TierContainer = "container"
	TierSandbox   = "sandbox"
)

// Config says what to measure.
type Config struct {
	// Dir holds the bundles and driver state; it and its ancestors must be
	// searchable by the benchmark's uid range. Empty: a new temporary
	// directory, removed by Close.
	Dir string
	// Busybox is the static busybox copied into the rootfs; default the
	// one in PATH.
	Busybox string
	// Platform is runsc's --platform (default ptrace).
	Platform string
}

// Bench holds one prepared bundle and two drivers per tier: rung's, and a
// raw state directory for `runc run` / `runsc run`.
type Bench struct {
	dir     string
	ownDir  bool
	tiers   map[string]*tierBench
	devNull *os.File
	seq     int
}

// tierBench is one tier's bundle, rung driver and raw command line.
type tierBench struct {
	tier    string
	bin     string // runtime binary path
	bundle  string // bundle directory
	rootfs  string
	driver  *runtime.OCI
	raw     []string // global flags of the raw runtime (its own --root)
	version string
}

// benchRange is the uid range the benchmark's replicas run as: the range
// reserved for runtime probes, which no tenant's files ever use.
func benchRange() uidrange.Range { return uidrange.Probe() }

// New prepares a busybox rootfs, a bundle and the drivers of each tier. A
// tier whose runtime is missing is an ErrUnavailable error; call Close
// when done.
func New(ctx context.Context, cfg Config, tiers ...string) (*Bench, error) {
	b := &Bench{dir: cfg.Dir, tiers: map[string]*tierBench{}}
	if b.dir == "" {
		d, err := os.MkdirTemp("", "rung-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		b.dir, b.ownDir = d, true
	}
	if err := os.MkdirAll(b.dir, 0o711); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := os.Chmod(b.dir, 0o711); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var err error
	if b.devNull, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	busybox := cfg.Busybox
	if busybox == "" {
		if busybox, err = exec.LookPath("busybox"); err != nil {
			b.Close()
			return nil, fmt.Errorf("bench: busybox: %v: %w", err, ErrUnavailable)
		}
	}
	for _, t := range tiers {
		tb, err := b.prepare(ctx, t, busybox, cfg)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.tiers[t] = tb
	}
	return b, nil
}

func (b *Bench) prepare(ctx context.Context, tier, busybox string, cfg Config) (*tierBench, error) {
	kind := map[string]string{TierContainer: "runc", TierSandbox: "runsc"}[tier]
	if kind == "" {
		return nil, fmt.Errorf("bench: tier %q: %w", tier, ErrUnavailable)
	}
	bin, err := exec.LookPath(kind)
	if err != nil {
		return nil, fmt.Errorf("bench %s: %v: %w", tier, err, ErrUnavailable)
	}
	dir := filepath.Join(b.dir, kind)
	tb := &tierBench{tier: tier, bin: bin, bundle: filepath.Join(dir, "bundle")}
	tb.rootfs = filepath.Join(tb.bundle, "rootfs")
	if err := os.MkdirAll(tb.bundle, 0o711); err != nil {
		return nil, fmt.Errorf("bench %s: %w", tier, err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("bench %s: %w", tier, err)
	}
	if err := busyboxRootfs(tb.rootfs, busybox, benchRange()); err != nil {
		return nil, fmt.Errorf("bench %s: %w", tier, err)
	}
	rawState := filepath.Join(dir, "raw")
	if err := os.MkdirAll(rawState, 0o700); err != nil {
		return nil, fmt.Errorf("bench %s: %w", tier, err)
	}
	platform := cfg.Platform
	if platform == "" {
		platform = "ptrace"
	}
	rcfg := runtime.Config{Binary: bin, Dir: filepath.Join(dir, "rung"), Platform: platform}
	if kind == "runc" {
		tb.driver, err = runtime.NewRunc(rcfg)
		tb.raw = []string{"--root", rawState}
	} else {
		var hf []string
		if hf, err = runtime.RunscHardeningFlags(ctx, bin); err == nil {
			tb.driver, err = runtime.NewRunsc(rcfg)
		}
		// The same global flags as the driver's (runtime.NewRunsc).
		tb.raw = append([]string{"--root", rawState, "--platform=" + platform, "--network=none", "--oci-seccomp"}, hf...)
	}
	if err != nil {
		return nil, fmt.Errorf("bench %s: %w", tier, err)
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("bench %s: %s --version: %v: %w", tier, bin, err, ErrUnavailable)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	tb.version = first
	if err := tb.writeSpec("/bin/true"); err != nil {
		return nil, err
	}
	return tb, nil
}

// busyboxRootfs makes a rootfs with only busybox and the applets the
// benchmark runs, owned by range r.
func busyboxRootfs(rootfs, busybox string, r uidrange.Range) error {
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	for _, applet := range []string{"sh", "true", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644); err != nil {
		return err
	}
	return uidrange.Shift(rootfs, r)
}

// writeSpec builds the hardened spec of a replica running args with
// bundle.New, as rung does for every replica, and writes it.
func (tb *tierBench) writeSpec(args ...string) error {
	s, err := bundle.New(
		bundle.WithUserNamespace(benchRange()),
		bundle.WithProcess(args, nil, "/"),
		// runsc's sentry and gofer threads count against the PIDs limit
		// and their memory against the memory limit: leave room.
		bundle.WithResources(1000, 256<<20, 256),
		bundle.WithCgroupsPath("/rung-bench/"+filepath.Base(filepath.Dir(tb.bundle))),
	)
	if err != nil {
		return fmt.Errorf("bench %s: %w", tb.tier, err)
	}
	if err := bundle.Write(tb.bundle, s); err != nil {
		return fmt.Errorf("bench %s: %w", tb.tier, err)
	}
	return nil
}

func (b *Bench) tier(t string) (*tierBench, error) {
	tb, ok := b.tiers[t]
	if !ok {
		return nil, fmt.Errorf("bench: tier %s not prepared: %w", t, ErrUnavailable)
	}
	return tb, nil
}

func (b *Bench) nextID(prefix string) string {
	b.seq++
	return fmt.Sprintf("rung-bench-%s-%d-%d", prefix, os.Getpid(), b.seq)
}

// StartRung runs /bin/true once through rung: bundle.New and bundle.Write
// of its spec, then runtime.Run (create, start, wait, delete) on the tier's
// driver. It returns the time from before bundle.New to after the delete.
func (b *Bench) StartRung(ctx context.Context, tier string) (time.Duration, error) {
	tb, err := b.tier(tier)
	if err != nil {
		return 0, err
	}
	id := b.nextID("rung")
	t0 := time.Now()
	if err := tb.writeSpec("/bin/true"); err != nil {
		return 0, err
	}
	exit, err := runtime.Run(ctx, tb.driver, id, tb.bundle, runtime.IO{Stdout: b.devNull, Stderr: b.devNull})
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("bench %s rung: %w", tier, err)
	}
	if exit.Code != 0 {
		return 0, fmt.Errorf("bench %s rung: /bin/true exited %d", tier, exit.Code)
	}
	return d, nil
}

// StartRaw runs /bin/true once with the bare runtime on the same bundle:
// `runc run` / `runsc run`, which create, start, wait and delete in one
// call. It returns the time the call took.
func (b *Bench) StartRaw(ctx context.Context, tier string) (time.Duration, error) {
	tb, err := b.tier(tier)
	if err != nil {
		return 0, err
	}
	id := b.nextID("raw")
	args := append(slices.Clone(tb.raw), "run", "--bundle", tb.bundle, id)
	cmd := exec.CommandContext(ctx, tb.bin, args...)
	cmd.Stdout, cmd.Stderr = b.devNull, b.devNull
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	err = cmd.Run()
	d := time.Since(t0)
	if err != nil {
		// Leave nothing behind; the error is what counts.
		_ = exec.Command(tb.bin, append(slices.Clone(tb.raw), "delete", "--force", id)...).Run()
		return 0, fmt.Errorf("bench %s raw %s run: %w", tier, filepath.Base(tb.bin), err)
	}
	return d, nil
}

// Version is the tier's runtime and the first line of its --version.
func (b *Bench) Version(tier string) string {
	if tb, ok := b.tiers[tier]; ok {
		return filepath.Base(tb.bin) + ": " + tb.version
	}
	return ""
}

// Close removes what New made: the directory (when New made it) and the
// parent cgroup /rung-bench once it is empty.
func (b *Bench) Close() error {
	if b.devNull != nil {
		b.devNull.Close()
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/rung-bench")
	for _, d := range append(dirs, "/sys/fs/cgroup/rung-bench") {
		_ = syscall.Rmdir(d) // only removes an empty cgroup
	}
	if b.ownDir {
		return os.RemoveAll(b.dir)
	}
	return nil
}
