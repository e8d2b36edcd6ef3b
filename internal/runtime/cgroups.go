package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/bundle"
)

// The cgroup of a sandbox run in its tenant's user namespace: runsc runs
// with --ignore-cgroups there (it can't write the host's cgroup files), so
// the driver makes the cgroup at the spec's cgroupsPath, writes the spec's
// limits as host root and puts runsc create into it before it runs (see
// startInCgroup). Every step fails closed.

// v1Controllers are the cgroup v1 hierarchies a sandbox joins: the ones
// that carry its limits, and cpuacct for its accounting.
var v1Controllers = []string{"cpu", "cpuacct", "memory", "pids"}

const cgroupRoot = "/sys/fs/cgroup"

func cgroupV2() bool {
	_, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers"))
	return err == nil
}

// specCgroup returns a bundle's cgroupsPath and resources; the path must
// be absolute and clean (bundle.WithCgroupsPath).
func specCgroup(bundleDir string) (string, *specs.LinuxResources, error) {
	s, err := bundle.Read(bundleDir)
	if err != nil {
		return "", nil, err
	}
	if s.Linux == nil || s.Linux.CgroupsPath == "" {
		return "", nil, fmt.Errorf("the spec has no linux.cgroupsPath: the sandbox's limits need a cgroup of its own (bundle.WithCgroupsPath)")
	}
	p := s.Linux.CgroupsPath
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return "", nil, fmt.Errorf("linux.cgroupsPath %q: want a clean absolute path other than /", p)
	}
	r := s.Linux.Resources
	if r == nil {
		r = &specs.LinuxResources{}
	}
	return p, r, nil
}

// makeCgroups creates the sandbox's cgroup in every hierarchy it joins and
// writes the spec's limits. On error what it made is removed.
func makeCgroups(bundleDir string) (err error) {
	p, res, err := specCgroup(bundleDir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			removeCgroups(bundleDir)
		}
	}()
	if cgroupV2() {
		return makeCgroupV2(p, res)
	}
	for _, c := range v1Controllers {
		dir := filepath.Join(cgroupRoot, c, p)
		if _, err := os.Stat(filepath.Join(cgroupRoot, c)); err != nil {
			return fmt.Errorf("cgroup v1 %s hierarchy: %w", c, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	var w []cgWrite
	if c := res.CPU; c != nil {
		dir := filepath.Join(cgroupRoot, "cpu", p)
		if c.Period != nil && *c.Period > 0 {
			w = append(w, cgWrite{dir, "cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10)})
		}
		if c.Quota != nil && *c.Quota != 0 {
			w = append(w, cgWrite{dir, "cpu.cfs_quota_us", strconv.FormatInt(*c.Quota, 10)})
		}
		if c.Shares != nil && *c.Shares > 0 {
			w = append(w, cgWrite{dir, "cpu.shares", strconv.FormatUint(*c.Shares, 10)})
		}
	}
	if m := res.Memory; m != nil {
		dir := filepath.Join(cgroupRoot, "memory", p)
		if m.Limit != nil && *m.Limit > 0 {
			w = append(w, cgWrite{dir, "memory.limit_in_bytes", strconv.FormatInt(*m.Limit, 10)})
		}
		if m.Swap != nil && *m.Swap > 0 {
			w = append(w, cgWrite{dir, "memory.memsw.limit_in_bytes", strconv.FormatInt(*m.Swap, 10)})
		}
		if m.Reservation != nil && *m.Reservation > 0 {
			w = append(w, cgWrite{dir, "memory.soft_limit_in_bytes", strconv.FormatInt(*m.Reservation, 10)})
		}
		if m.Swappiness != nil {
			w = append(w, cgWrite{dir, "memory.swappiness", strconv.FormatUint(*m.Swappiness, 10)})
		}
	}
	if pl := res.Pids; pl != nil && pl.Limit != nil && *pl.Limit > 0 {
		w = append(w, cgWrite{filepath.Join(cgroupRoot, "pids", p), "pids.max", strconv.FormatInt(*pl.Limit, 10)})
	}
	return applyWrites(w)
}

// makeCgroupV2 is makeCgroups on the unified hierarchy alone.
func makeCgroupV2(p string, res *specs.LinuxResources) error {
	// Enable the controllers on the way down (the replica's parents).
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := cgroupRoot
	for _, part := range parts {
		if err := os.WriteFile(filepath.Join(cur, "cgroup.subtree_control"), []byte("+cpu +memory +pids"), 0o644); err != nil {
			return fmt.Errorf("enable controllers in %s: %w", cur, err)
		}
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	var w []cgWrite
	if c := res.CPU; c != nil {
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			w = append(w, cgWrite{cur, "cpu.max", fmt.Sprintf("%d %d", *c.Quota, period)})
		}
		if c.Shares != nil && *c.Shares > 0 {
			// runc's conversion of v1 shares (2…262144) to a weight (1…10000).
			weight := 1 + ((*c.Shares-2)*9999)/262142
			w = append(w, cgWrite{cur, "cpu.weight", strconv.FormatUint(weight, 10)})
		}
	}
	if m := res.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			w = append(w, cgWrite{cur, "memory.max", strconv.FormatInt(*m.Limit, 10)})
			if m.Swap != nil && *m.Swap >= *m.Limit {
				w = append(w, cgWrite{cur, "memory.swap.max", strconv.FormatInt(*m.Swap-*m.Limit, 10)})
			}
		}
		if m.Reservation != nil && *m.Reservation > 0 {
			w = append(w, cgWrite{cur, "memory.low", strconv.FormatInt(*m.Reservation, 10)})
		}
	}
	if pl := res.Pids; pl != nil && pl.Limit != nil && *pl.Limit > 0 {
		w = append(w, cgWrite{cur, "pids.max", strconv.FormatInt(*pl.Limit, 10)})
	}
	return applyWrites(w)
}

type cgWrite struct{ dir, file, value string }

func applyWrites(ws []cgWrite) error {
	for _, w := range ws {
		if err := os.WriteFile(filepath.Join(w.dir, w.file), []byte(w.value), 0o644); err != nil {
			return fmt.Errorf("cgroup limit %s = %s: %w", filepath.Join(w.dir, w.file), w.value, err)
		}
	}
	return nil
}

// enterCgroups moves pid into the sandbox's cgroup in every hierarchy it
// joins (made by makeCgroups).
func enterCgroups(bundleDir string, pid int) error {
	p, _, err := specCgroup(bundleDir)
	if err != nil {
		return err
	}
	dirs := []string{filepath.Join(cgroupRoot, p)}
	if !cgroupV2() {
		dirs = dirs[:0]
		for _, c := range v1Controllers {
			dirs = append(dirs, filepath.Join(cgroupRoot, c, p))
		}
	}
	for _, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("join cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// removeCgroupsWait removes a deleted sandbox's cgroup once its last
// process (a stub that dies after the sentry) has left it, for up to a
// minute.
func removeCgroupsWait(cgroupsPath string) error {
	deadline := time.Now().Add(cleanupWait)
	for {
		left := ""
		for _, d := range cgroupDirsOf(cgroupsPath) {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				left = d
			}
		}
		if left == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still busy after the sandbox's delete", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
