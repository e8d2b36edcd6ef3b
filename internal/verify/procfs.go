package verify

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Inspect reads the isolation of live process pid on this host.
func Inspect(ctx context.Context, pid int) (Report, error) {
	return Host{}.Inspect(ctx, pid)
}

// Inspect reads the isolation of process pid from h: its status, ID maps,
// namespaces, cgroups with their limits, and mounts. A process that does
// not exist is ErrNoProcess.
func (h Host) Inspect(ctx context.Context, pid int) (Report, error) {
	r := Report{Pid: pid}
	status, err := h.readFile(procPath(pid, "status"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Report{}, fmt.Errorf("inspect pid %d: %w", pid, ErrNoProcess)
		}
		return Report{}, fmt.Errorf("inspect pid %d: %w", pid, err)
	}
	if err := parseStatus(status, &r); err != nil {
		return Report{}, fmt.Errorf("inspect pid %d: status: %w", pid, err)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"cmdline", func() error { return h.readCommand(&r) }},
		{"uid_map", func() (err error) { r.UIDMap, err = h.readIDMap(procPath(pid, "uid_map")); return }},
		{"gid_map", func() (err error) { r.GIDMap, err = h.readIDMap(procPath(pid, "gid_map")); return }},
		{"namespaces", func() error { return h.readNamespaces(&r) }},
		{"mountinfo", func() error { return h.readMounts(&r) }},
		{"cgroup", func() error { return h.readCgroups(&r) }},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return Report{}, fmt.Errorf("inspect pid %d: %w", pid, err)
		}
		if err := s.do(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w (%v)", ErrNoProcess, err)
			}
			return Report{}, fmt.Errorf("inspect pid %d: %s: %w", pid, s.what, err)
		}
	}
	return r, nil
}

// parseStatus fills the ID, capability, no_new_privs and seccomp fields
// from /proc/PID/status.
func parseStatus(b []byte, r *Report) error {
	r.NoNewPrivs, r.Seccomp = -1, -1
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Name":
			r.Command = val
		case "Uid":
			r.UID, err = parseIDs(val)
		case "Gid":
			r.GID, err = parseIDs(val)
		case "CapInh":
			r.Caps.Inheritable, err = parseCapSet(val)
		case "CapPrm":
			r.Caps.Permitted, err = parseCapSet(val)
		case "CapEff":
			r.Caps.Effective, err = parseCapSet(val)
		case "CapBnd":
			r.Caps.Bounding, err = parseCapSet(val)
		case "CapAmb":
			r.Caps.Ambient, err = parseCapSet(val)
		case "NoNewPrivs":
			r.NoNewPrivs, err = strconv.Atoi(val)
		case "Seccomp":
			r.Seccomp, err = strconv.Atoi(val)
		case "Seccomp_filters":
			r.SeccompFilters, err = strconv.Atoi(val)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("%s %q: %w", key, val, ErrMalformed)
		}
		seen[key] = true
	}
	for _, k := range []string{"Uid", "Gid", "CapEff", "CapPrm", "CapBnd"} {
		if !seen[k] {
			return fmt.Errorf("no %s line: %w", k, ErrMalformed)
		}
	}
	return sc.Err()
}

func parseIDs(s string) (IDs, error) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return IDs{}, ErrMalformed
	}
	var v [4]uint32
	for i, x := range f {
		n, err := strconv.ParseUint(x, 10, 32)
		if err != nil {
			return IDs{}, err
		}
		v[i] = uint32(n)
	}
	return IDs{Real: v[0], Effective: v[1], Saved: v[2], FS: v[3]}, nil
}

// readCommand sets Args from the command line and Command to argv[0],
// keeping the status Name when the command line is empty.
func (h Host) readCommand(r *Report) error {
	b, err := h.readFile(procPath(r.Pid, "cmdline"))
	if err != nil {
		return err
	}
	r.Args = nil
	for _, a := range bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}) {
		if len(a) > 0 || len(r.Args) > 0 {
			r.Args = append(r.Args, string(a))
		}
	}
	if len(r.Args) > 0 {
		r.Command = r.Args[0]
	}
	return nil
}

// readIDMap parses uid_map or gid_map: "inside outside count" lines.
func (h Host) readIDMap(path string) ([]IDMap, error) {
	b, err := h.readFile(path)
	if err != nil {
		return nil, err
	}
	var out []IDMap
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("line %q: %w", line, ErrMalformed)
		}
		var v [3]uint32
		for i, x := range f {
			n, err := strconv.ParseUint(x, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", line, ErrMalformed)
			}
			v[i] = uint32(n)
		}
		out = append(out, IDMap{ContainerID: v[0], HostID: v[1], Size: v[2]})
	}
	return out, nil
}

// namespaceTypes are the /proc/PID/ns entries Inspect compares, in order.
func namespaceTypes() []string {
	return []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}
}

// readNamespaces reads /proc/PID/ns/* and compares each with the host's:
// PID 1's, or when PID 1's are unreadable (a process manager that hides
// them), the inspecting process's own.
func (h Host) readNamespaces(r *Report) error {
	ref := "/proc/1/ns"
	if _, err := h.readLink(ref + "/user"); err != nil {
		ref = "/proc/self/ns"
	}
	r.NamespaceReference = ref
	for _, t := range namespaceTypes() {
		id, err := h.readLink(procPath(r.Pid, "ns/"+t))
		if errors.Is(err, fs.ErrNotExist) && t == "time" {
			continue // kernels before 5.6 have no time namespace
		}
		if err != nil {
			return err
		}
		host, err := h.readLink(ref + "/" + t)
		if err != nil {
			return fmt.Errorf("reference %s/%s: %w", ref, t, err)
		}
		r.Namespaces = append(r.Namespaces, Namespace{Type: t, ID: id, Private: id != host})
	}
	return nil
}

// parseMountinfo parses /proc/PID/mountinfo lines:
// id parent major:minor root point options [optional...] - fstype source superoptions.
func parseMountinfo(b []byte) ([]mountLine, error) {
	var out []mountLine
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 3 {
			return nil, fmt.Errorf("mountinfo line %q: %w", line, ErrMalformed)
		}
		out = append(out, mountLine{
			Mount: Mount{
				Point:  unescapeMount(f[4]),
				FSType: g[0],
				Source: unescapeMount(g[1]),
				Root:   unescapeMount(f[3]),
				ReadOnly: slices.Contains(strings.Split(f[5], ","), "ro") ||
					slices.Contains(strings.Split(g[2], ","), "ro"),
			},
			superOpts: strings.Split(g[2], ","),
		})
	}
	return out, nil
}

// mountLine is a parsed mountinfo line with the superblock options that
// name cgroup v1 controllers.
type mountLine struct {
	Mount
	superOpts []string
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// kernelFS are filesystems that hold no host files: a replica may mount
// them (its own instances).
func kernelFS() []string {
	return []string{"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"}
}

// standardDevices are the device nodes a runtime bind-mounts from the host
// into a user-namespaced container (it may not mknod them), and that masks
// files with (/dev/null).
func standardDevices() []string {
	return []string{"/null", "/zero", "/full", "/random", "/urandom", "/tty"}
}

// readMounts sets Root (the last mount at "/") and HostMounts.
func (h Host) readMounts(r *Report) error {
	b, err := h.readFile(procPath(r.Pid, "mountinfo"))
	if err != nil {
		return err
	}
	mounts, err := parseMountinfo(b)
	if err != nil {
		return err
	}
	rootIdx := -1
	for i, m := range mounts {
		if m.Point == "/" {
			rootIdx = i
		}
	}
	if rootIdx < 0 {
		return fmt.Errorf("no root mount: %w", ErrMalformed)
	}
	r.Root = mounts[rootIdx].Mount
	r.HostMounts = nil
	for i, m := range mounts {
		if i == rootIdx || slices.Contains(kernelFS(), m.FSType) {
			continue
		}
		if m.FSType == "devtmpfs" && slices.Contains(standardDevices(), m.Root) {
			continue
		}
		r.HostMounts = append(r.HostMounts, m.Mount)
	}
	return nil
}
