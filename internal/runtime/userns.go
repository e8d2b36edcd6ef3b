package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/uidrange"
)

// Sandboxes under their tenant's host identity (issue 19 item 2).
//
// runsc run as host root maps every sandbox's nobody to host nobody: all
// tenants' sentries would share host uid 65534. runsc run as root of a
// user namespace mapped to the tenant's uid range maps it to the tenant's
// nobody (HostUID+65534) instead, so one tenant's sentry can neither
// signal nor ptrace another's. The driver runs every sandbox that way:
//
//   - a holder process per replica ("rung-userns:ID", an idle sleep in a
//     new user namespace mapping 0…Size-1 to the tenant's range, and a
//     network namespace of its own that the namespace owns) keeps the
//     namespace; every runsc call for the replica (create, start, state,
//     kill, exec, delete) runs inside it through nsenter, so kill and
//     delete act from the sentry's parent namespace. It survives an agent
//     restart; Delete ends it.
//   - runsc's state (--root) lives in DIR/sandboxes/ID/state, owned by the
//     tenant's root (runsc writes it from inside); the record that ties the
//     replica to its range and holder, and the spec runsc reads (its
//     mappings relative to the namespace, no cgroupsPath), stay root's.
//   - inside the namespace runsc can't write the host's cgroup files, so
//     it runs with --ignore-cgroups and the driver makes the replica's
//     cgroup and writes its limits itself as host root, then lets runsc
//     create start inside it (a gate: the CLI waits on a pipe until it has
//     been moved there), so the sentry, its stubs and the gofer are born
//     in the cgroup.
//
// Anything that can't be set up refuses the replica (ErrUserNS): it never
// runs under the shared host nobody.

// ErrUserNS: the sandbox's user namespace, state or cgroup could not be
// set up, so the sandbox was refused.
var ErrUserNS = errors.New("sandbox user namespace")

// errHolderGone: the holder of a sandbox's user namespace is gone, so
// runsc can't be run as the tenant's root for it any more.
var errHolderGone = fmt.Errorf("%w: its holder is gone", ErrUserNS)

// holderPrefix names a holder process (its argv[0]).
const holderPrefix = "rung-userns:"

// box is the record of a sandbox run in its tenant's user namespace
// (DIR/sandboxes/ID.json, root's).
type box struct {
	Range  uidrange.Range `json:"range"`
	Holder int            `json:"holder"`
	// Bundle is the replica's own bundle; runsc reads the spec made from
	// it in DIR/sandboxes/ID.bundle.
	Bundle string `json:"bundle,omitempty"`
	// Cgroup is the spec's cgroupsPath: the cgroup the driver made.
	Cgroup string `json:"cgroup,omitempty"`
}

func (d *OCI) boxDir(id string) string    { return filepath.Join(d.boxes, id) }
func (d *OCI) boxState(id string) string  { return filepath.Join(d.boxes, id, "state") }
func (d *OCI) boxRecord(id string) string { return filepath.Join(d.boxes, id+".json") }
func (d *OCI) boxBundle(id string) string { return filepath.Join(d.boxes, id+".bundle") }
func (d *OCI) boxRuntimeLog(id string) string {
	return filepath.Join(d.boxes, id, "runtime.log")
}

// namespaced reports whether this driver runs its sandboxes in their
// tenants' user namespaces: runsc does (a sandbox left from before, in the
// shared state directory, keeps the host's: legacyBox).
func (d *OCI) namespaced() bool { return d.kind == "runsc" }

// loadBox returns id's record, or nil when id has none.
func (d *OCI) loadBox(id string) (*box, error) {
	if !d.namespaced() {
		return nil, nil
	}
	b, err := os.ReadFile(d.boxRecord(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var bx box
	if err := json.Unmarshal(b, &bx); err != nil {
		return nil, fmt.Errorf("%s: %w", d.boxRecord(id), err)
	}
	return &bx, nil
}

// legacy reports whether id is a sandbox created by a driver that ran
// runsc as host root (state in the shared state directory, no record).
func (d *OCI) legacy(id string) bool {
	if !d.namespaced() {
		return false
	}
	if _, err := os.Stat(d.boxRecord(id)); err == nil {
		return false
	}
	return d.stateIn(d.state, id) || d.stateIn(d.state, id+"."+d.scope)
}

// rangeOf returns the tenant range of a spec: its one uid and gid mapping
// of the same size. The sandbox tier needs it to pick the host identity.
func rangeOf(s *specs.Spec) (uidrange.Range, error) {
	if s.Linux == nil || len(s.Linux.UIDMappings) != 1 || len(s.Linux.GIDMappings) != 1 {
		return uidrange.Range{}, fmt.Errorf("%w: the spec needs exactly one linux.uidMappings and one linux.gidMappings entry "+
			"(the tenant's uid range, bundle.WithUserNamespace) to run the sandbox under the tenant's host identity", ErrUserNS)
	}
	u, g := s.Linux.UIDMappings[0], s.Linux.GIDMappings[0]
	if u.ContainerID != 0 || g.ContainerID != 0 || u.Size != g.Size {
		return uidrange.Range{}, fmt.Errorf("%w: linux.uidMappings/gidMappings must map container id 0 and have the same size", ErrUserNS)
	}
	r := uidrange.Range{HostUID: u.HostID, HostGID: g.HostID, Size: u.Size}
	if err := r.Validate(); err != nil {
		return uidrange.Range{}, fmt.Errorf("%w: the spec's mapping: %v", ErrUserNS, err)
	}
	return r, nil
}

// holderOK reports whether pid is id's holder with range r's mapping.
func holderOK(pid int, id string, r uidrange.Range) bool {
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.HasPrefix(string(cmdline), holderPrefix+id+"\x00") {
		return false
	}
	m, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(m))
	return len(f) == 3 && f[0] == "0" && f[1] == strconv.Itoa(int(r.HostUID)) && f[2] == strconv.Itoa(int(r.Size))
}

// startHolder starts id's holder: an idle process in a new user namespace
// mapping 0…Size-1 to r (and a network namespace that namespace owns).
func (d *OCI) startHolder(id string, r uidrange.Range) (int, error) {
	cmd := &exec.Cmd{Path: d.sleep, Args: []string{holderPrefix + id, "infinity"}, Dir: "/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.HostUID), Size: int(r.Size)}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.HostGID), Size: int(r.Size)}},
		// Its own session: a terminal's signals don't reach it, and it
		// outlives this process (an agent restart).
		Setsid: true,
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%w: user namespace for range %v: %v", ErrUserNS, r, err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reaped here while this process lives
	return pid, nil
}

// stopHolder ends id's holder if it is still the one recorded.
func stopHolder(pid int, id string, r uidrange.Range) {
	if holderOK(pid, id, r) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// prepareBox sets id up to run in its tenant's user namespace: the
// record, the holder, the tenant-owned state directory, the spec runsc
// reads. It returns the derived bundle directory. On error nothing is
// left behind.
func (d *OCI) prepareBox(id, bundleDir string) (b *box, derived string, err error) {
	spec, err := bundle.Read(bundleDir)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	r, err := rangeOf(spec)
	if err != nil {
		return nil, "", err
	}
	if d.nsenter == "" || d.sleep == "" || d.shell == "" {
		return nil, "", fmt.Errorf("%w: nsenter, sleep and sh are needed (util-linux, coreutils, dash): %w", ErrUserNS, ErrUnavailable)
	}
	if err := othersCanExec(d.bin); err != nil {
		return nil, "", fmt.Errorf("%w: runsc runs as the tenant's root, not host root: %v", ErrUserNS, err)
	}
	// A holder prepared for this replica (SandboxNetNS) is kept; any
	// other leftover is of a sandbox that died with its runtime.
	var pid int
	if old, _ := d.loadBox(id); old != nil {
		if old.Bundle == "" && old.Range == r && holderOK(old.Holder, id, r) {
			pid = old.Holder
		} else {
			stopHolder(old.Holder, id, old.Range)
		}
	}
	d.removeBox(id)
	if pid != 0 {
		b = &box{Range: r, Holder: pid}
	}
	defer func() {
		if err != nil {
			if b != nil {
				stopHolder(b.Holder, id, b.Range)
			}
			d.removeBox(id)
		}
	}()
	if err := os.MkdirAll(d.boxes, 0o711); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	dir := d.boxDir(id)
	for _, p := range []string{dir, d.boxState(id)} {
		if err := os.Mkdir(p, 0o700); err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
		}
		if err := os.Lchown(p, int(r.HostUID), int(r.HostGID)); err != nil {
			return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
		}
	}
	// The spec as runsc sees it from inside the namespace: the tenant's
	// range is 0…Size-1 there; the rootfs stays where it is (owned by the
	// range); the cgroup is the driver's business (--ignore-cgroups).
	rootfs := "rootfs"
	if spec.Root != nil && spec.Root.Path != "" {
		rootfs = spec.Root.Path
	}
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundleDir, rootfs)
	}
	spec.Root.Path = rootfs
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: r.Size}}
	spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: r.Size}}
	cgroup := spec.Linux.CgroupsPath
	spec.Linux.CgroupsPath = ""
	derived = d.boxBundle(id)
	if err := os.Mkdir(derived, 0o711); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	// Readable by the tenant's root (group), writable by host root only.
	cfg := filepath.Join(derived, "config.json")
	if err := os.WriteFile(cfg, raw, 0o640); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	if err := os.Lchown(cfg, 0, int(r.HostGID)); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	if pid == 0 {
		if pid, err = d.startHolder(id, r); err != nil {
			return nil, "", err
		}
	}
	b = &box{Range: r, Holder: pid, Bundle: bundleDir, Cgroup: cgroup}
	if err := writeJSONFile(d.boxRecord(id), b); err != nil {
		return b, "", fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	return b, derived, nil
}

// boxUp readies boxed sandbox id to be created from bundleDir: its box
// (prepareBox) and its cgroup with the spec's limits, which its holder
// joins too, so that whatever stops the agent's own cgroup (systemd)
// leaves the holder with its sandbox. On error nothing is left.
func (d *OCI) boxUp(id, bundleDir string) (*box, string, error) {
	b, derived, err := d.prepareBox(id, bundleDir)
	if err != nil {
		return nil, "", err
	}
	if err := makeCgroups(bundleDir); err != nil {
		stopHolder(b.Holder, id, b.Range)
		d.removeBox(id)
		return nil, "", fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	if err := enterCgroups(bundleDir, b.Holder); err != nil {
		_ = d.closeBox(id, b)
		return nil, "", fmt.Errorf("%w: holder: %v", ErrUserNS, err)
	}
	return b, derived, nil
}

// removeBox removes id's record, state and spec (not its holder).
func (d *OCI) removeBox(id string) {
	unmountNullNetNS(d.boxState(id))
	_ = os.RemoveAll(d.boxDir(id))
	_ = os.RemoveAll(d.boxBundle(id))
	_ = os.Remove(d.boxRecord(id))
}

// closeBox ends a deleted sandbox's holder, waits for its cgroup to empty
// and removes it, and removes the box.
func (d *OCI) closeBox(id string, b *box) error {
	stopHolder(b.Holder, id, b.Range)
	var err error
	if b.Cgroup != "" {
		err = removeCgroupsWait(b.Cgroup)
	}
	d.removeBox(id)
	return err
}

// boxCommand is a runsc call for boxed sandbox id, run as root of its
// tenant's user namespace through its holder.
func (d *OCI) boxCommand(ctx context.Context, id string, b *box, runtimeLog string, args ...string) (*exec.Cmd, error) {
	full := []string{d.bin, "--root", d.boxState(id)}
	full = append(full, d.globalFlags()...)
	full = append(full, "--ignore-cgroups")
	if runtimeLog != "" {
		full = append(full, "--log", runtimeLog, "--log-format", "json")
	}
	full = append(full, args...)
	switch {
	case holderOK(b.Holder, id, b.Range):
		full = append([]string{d.nsenter, "-t", strconv.Itoa(b.Holder), "-U", "-S", "0", "-G", "0", "--"}, full...)
	case len(args) > 0 && args[0] == "state":
		// The holder was killed (or the host rebooted). Reading the state
		// as host root is harmless; anything runsc would do from it is not
		// (the state directory is the tenant's to write): Kill and Delete
		// stop such a sandbox through its cgroup instead (killCgroup).
		d.log.Warn("user namespace holder gone; reading the sandbox's state as host root", "id", id, "holder", b.Holder)
	default:
		return nil, fmt.Errorf("%s (pid %d) for %s: %w", b.Cgroup, b.Holder, id, errHolderGone)
	}
	var cmd *exec.Cmd
	if ctx == nil {
		cmd = exec.Command(full[0], full[1:]...)
	} else {
		cmd = exec.CommandContext(ctx, full[0], full[1:]...)
	}
	cmd.Dir = d.boxDir(id)
	return cmd, nil
}

// gated wraps a runsc call so that it waits, once in the namespace, until
// released: the caller moves it into the replica's cgroup meanwhile. sh
// reads one line from fd 3 (the gate), closes it and execs runsc.
func (d *OCI) gated(cmd *exec.Cmd) (release func() error, abort func(), err error) {
	i := 0
	for i < len(cmd.Args) && cmd.Args[i] != "--" {
		i++
	}
	if i == len(cmd.Args) {
		return nil, nil, fmt.Errorf("%w: no command to gate", ErrUserNS)
	}
	rest := append([]string{}, cmd.Args[i+1:]...)
	cmd.Args = append(append(cmd.Args[:i+1:i+1], d.shell, "-c", `read -r _ <&3 || exit 125; exec 3<&-; exec "$@"`, "rung-gate"), rest...)
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.ExtraFiles = []*os.File{r}
	release = func() error {
		r.Close()
		_, err := io.WriteString(w, "go\n")
		w.Close()
		return err
	}
	abort = func() { r.Close(); w.Close() }
	return release, abort, nil
}

// startInCgroup starts cmd (gated) and moves it into bundle's cgroup
// before it runs runsc; it refuses (and kills cmd) if that fails.
func (d *OCI) startInCgroup(cmd *exec.Cmd, bundleDir string) error {
	release, abort, err := d.gated(cmd)
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		abort()
		return err
	}
	if err := enterCgroups(bundleDir, cmd.Process.Pid); err != nil {
		abort()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("%w: %v", ErrUserNS, err)
	}
	if err := release(); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("%w: gate: %v", ErrUserNS, err)
	}
	return nil
}

// waitTimeout bounds cleanup waits.
const cleanupWait = 60 * time.Second

// SandboxNetNS returns the network namespace sandbox id will run in when
// its spec names it (linux.namespaces: {type: network, path: PATH}),
// as /proc/PID/ns/net. runsc runs as root of the tenant's user namespace,
// so it can only join a network namespace that namespace owns: one made
// by root in the host's (ip netns add) is refused (EPERM). This one is
// the namespace of id's holder, made with its user namespace, so call it
// before Create (with the tenant's range r: the spec's) and configure the
// namespace as host root. Create then keeps the holder; Delete ends it
// (also when no sandbox was created).
func (d *OCI) SandboxNetNS(ctx context.Context, id string, r uidrange.Range) (string, error) {
	if err := d.check(id); err != nil {
		return "", err
	}
	if !d.namespaced() {
		return "", fmt.Errorf("%s: sandbox network namespaces are runsc's: %w", d.kind, ErrUnavailable)
	}
	if err := r.Validate(); err != nil {
		return "", fmt.Errorf("%s netns %s: %w: %v", d.kind, id, ErrUserNS, err)
	}
	if d.sleep == "" {
		return "", fmt.Errorf("%s netns %s: %w: sleep (coreutils) not found", d.kind, id, ErrUserNS)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, err := d.loadBox(id); err != nil {
		return "", fmt.Errorf("%s netns %s: %w", d.kind, id, err)
	} else if old != nil {
		if old.Range == r && holderOK(old.Holder, id, r) {
			return fmt.Sprintf("/proc/%d/ns/net", old.Holder), nil
		}
		if old.Bundle != "" {
			return "", fmt.Errorf("%s netns %s: %w", d.kind, id, ErrExists)
		}
		stopHolder(old.Holder, id, old.Range)
		d.removeBox(id)
	}
	if err := os.MkdirAll(d.boxes, 0o711); err != nil {
		return "", fmt.Errorf("%s netns %s: %w: %v", d.kind, id, ErrUserNS, err)
	}
	pid, err := d.startHolder(id, r)
	if err != nil {
		return "", fmt.Errorf("%s netns %s: %w", d.kind, id, err)
	}
	if err := writeJSONFile(d.boxRecord(id), &box{Range: r, Holder: pid}); err != nil {
		stopHolder(pid, id, r)
		return "", fmt.Errorf("%s netns %s: %w: %v", d.kind, id, ErrUserNS, err)
	}
	return fmt.Sprintf("/proc/%d/ns/net", pid), nil
}

// othersCanExec checks that a user who is neither owner nor group of the
// file or its directories (the tenant's root) can run bin: o+x on it and
// on each directory above it, after symlinks.
func othersCanExec(bin string) error {
	p, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return err
	}
	for cur := p; ; cur = filepath.Dir(cur) {
		fi, err := os.Stat(cur)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not executable/searchable by others (mode %v), so %s can't run from a user namespace", cur, fi.Mode().Perm(), bin)
		}
		if cur == "/" || cur == "." {
			return nil
		}
	}
}

// killCgroup SIGKILLs every process of a sandbox's cgroup (made by the
// driver, root's: its tenant can't move processes in or out) until it is
// empty, for up to a minute. It stops a sandbox whose holder is gone
// without trusting its tenant-writable runsc state.
func killCgroup(cgroupsPath string) error {
	dirs := cgroupDirsOf(cgroupsPath)
	if len(dirs) == 0 {
		return fmt.Errorf("%w: no cgroup to stop the sandbox by", ErrUserNS)
	}
	deadline := time.Now().Add(cleanupWait)
	for {
		left := 0
		for _, dir := range dirs {
			b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			if err != nil {
				continue // removed, or not a hierarchy it joined
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					left++
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: cgroup %s still has processes after SIGKILL", ErrUserNS, cgroupsPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inCgroup reports whether pid is in cgroup path (cgroup v1's memory or
// pids hierarchy, or v2's).
func inCgroup(pid int, path string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 || parts[2] != path {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" || c == "pids" || (parts[0] == "0" && c == "") {
				return true
			}
		}
	}
	return false
}
