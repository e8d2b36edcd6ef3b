package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/uidrange"
)

// Detect probes whether this driver's tier can run here, once per driver
// (the result is cached; build one driver per tier per process). The probe
// is real: the binary must answer --version, user namespaces must be
// enabled, and a hardened container (user namespace with the probe range,
// seccomp, cgroup limits; for runsc a whole gVisor sandbox with its gofer)
// must reach the "created" state and be deleted. Anything else reports the
// tier unavailable with the reason (fail closed).
func (d *OCI) Detect(ctx context.Context) Availability {
	d.detectMu.Lock()
	defer d.detectMu.Unlock()
	if d.detected != nil {
		return *d.detected
	}
	a := d.probe(ctx)
	d.detected = &a
	if a.Available {
		d.log.Info("tier available", "tier", a.Tier, "runtime", a.Runtime, "version", a.Version)
	} else {
		d.log.Warn("tier unavailable", "tier", a.Tier, "reason", a.Reason)
	}
	return a
}

func (d *OCI) probe(ctx context.Context) Availability {
	a := Availability{Tier: d.tier, Runtime: d.bin}
	if d.bin == "" {
		a.Reason = fmt.Sprintf("%s: %v", d.kind, d.binErr)
		return a
	}
	ver, err := d.version(ctx)
	if err != nil {
		a.Reason = fmt.Sprintf("%s --version: %v", d.bin, err)
		return a
	}
	a.Version = ver
	if n, err := readInt("/proc/sys/user/max_user_namespaces"); err != nil || n == 0 {
		a.Reason = "user namespaces are disabled (/proc/sys/user/max_user_namespaces)"
		return a
	}
	if err := d.probeContainer(ctx); err != nil {
		a.Reason = fmt.Sprintf("probe container: %v", err)
		return a
	}
	a.Available = true
	a.Reason = fmt.Sprintf("created and deleted a hardened %s container", d.kind)
	if d.namespaced() {
		a.Reason += ", runsc run as root of the probe range's user namespace (each tenant's sentry under its own host uid)"
	}
	return a
}

func (d *OCI) version(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := d.exec(ctx, "--version")
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !strings.Contains(first, "version") {
		return "", fmt.Errorf("unexpected output %q", first)
	}
	return strings.TrimSpace(first[strings.Index(first, "version")+len("version"):]), nil
}

// probeContainer creates (never starts) a container from an empty rootfs.
func (d *OCI) probeContainer(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	d.sweepProbes(ctx)
	// runc looks the command up at create time; an empty executable file
	// is enough, as the probe never starts.
	dir, id, err := d.probeBundle(nil)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	if err := d.Create(ctx, id, dir, IO{}); err != nil {
		return err
	}
	st, serr := d.State(ctx, id)
	t1 := time.Now()
	derr := d.Delete(ctx, id)
	d.log.Debug("probe", "runtime", d.kind, "create", t1.Sub(t0), "delete", time.Since(t1))
	switch {
	case serr != nil:
		return serr
	case st.Status != Created:
		return fmt.Errorf("probe container is %s, want %s", st.Status, Created)
	case derr != nil:
		return derr
	}
	return nil
}

// probeBundle writes a probe's bundle beside the runtime's state: a rootfs
// holding only exe as /probe, owned by the probe's user range, in a user
// namespace and a cgroup of its own. The caller removes dir.
func (d *OCI) probeBundle(exe []byte) (dir, id string, err error) {
	dir, err = os.MkdirTemp(filepath.Dir(d.state), "probe-")
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	// The runtime opens the rootfs from inside the user namespace.
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", "", err
	}
	r := uidrange.Probe()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return "", "", err
	}
	prog := filepath.Join(rootfs, "probe")
	if err := os.WriteFile(prog, exe, 0o755); err != nil {
		return "", "", err
	}
	for _, p := range []string{rootfs, prog} {
		if err := os.Lchown(p, int(r.HostUID), int(r.HostGID)); err != nil {
			return "", "", err
		}
	}
	id = fmt.Sprintf("rung-probe-%d-%d", os.Getpid(), time.Now().UnixNano())
	spec, err := bundle.New(
		bundle.WithUserNamespace(r),
		bundle.WithProcess([]string{"/probe"}, nil, "/"),
		// runsc's sentry and gofer threads count against the PIDs limit
		// and their memory against the memory limit: leave room.
		bundle.WithResources(100, 128<<20, 128),
		bundle.WithCgroupsPath("/rung-probe/"+id),
	)
	if err != nil {
		return "", "", err
	}
	return dir, id, bundle.Write(dir, spec)
}

// sweepProbes deletes probe containers and bundles left by a process that
// died mid-probe (kill -9): their id carries the prober's pid, and only
// probes of processes that are gone are touched.
func (d *OCI) sweepProbes(ctx context.Context) {
	entries, _ := os.ReadDir(d.state)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "rung-probe-") {
			continue
		}
		id, _, _ := strings.Cut(name, "_sandbox:") // runsc's state file name
		id = strings.TrimSuffix(id, ".state")
		var pid, stamp int64
		if _, err := fmt.Sscanf(id, "rung-probe-%d-%d", &pid, &stamp); err != nil || pid <= 0 {
			continue
		}
		if pid == int64(os.Getpid()) || syscall.Kill(int(pid), 0) == nil {
			continue // ours, or a live prober's
		}
		_, _ = d.exec(ctx, "delete", "--force", id)
		_ = os.Remove(filepath.Join(d.state, name)) // runsc lock/state files of a dead probe
	}
	// Probes run in their range's user namespace (userns.go): their boxes.
	recs, _ := filepath.Glob(filepath.Join(d.boxes, "rung-probe-*.json"))
	for _, rec := range recs {
		id := strings.TrimSuffix(filepath.Base(rec), ".json")
		var pid, stamp int64
		if _, err := fmt.Sscanf(id, "rung-probe-%d-%d", &pid, &stamp); err != nil || pid <= 0 {
			continue
		}
		if pid == int64(os.Getpid()) || syscall.Kill(int(pid), 0) == nil {
			continue
		}
		_ = d.Delete(ctx, id)
	}
	// Probe bundles are removed when the probe returns; one older than the
	// probe's own timeout belongs to a prober that died.
	dirs, _ := filepath.Glob(filepath.Join(filepath.Dir(d.state), "probe-*"))
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) > 2*time.Minute {
			_ = os.RemoveAll(dir)
		}
	}
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
