// Package verify proves a running replica's isolation from the live
// process: it reads /proc/PID (status, uid and gid maps, namespaces,
// cgroups, mountinfo) and the cgroup limit files on the host, and checks
// them against the hardening that DESIGN §1 promises and the replica's spec
// asks for. It is what `rung verify` prints and what a tenant can re-run.
//
// For the sandbox tier the workload runs inside gVisor's kernel, whose
// /proc shows gVisor's own view; the proof is then read from the sandbox's
// host-side processes (the sentry, its ptrace stubs, the gofer), and a
// Replica says what is proven from the host and what gVisor enforces
// inside.
//
// Inspect and Check are separate: Inspect only reads, Check only decides,
// so Check is tested on fixture /proc trees and both on live replicas.
package verify

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Sentinel errors, wrapped with the PID or path by every call.
var (
	// ErrNoProcess: the process does not exist (any more).
	ErrNoProcess = errors.New("no such process")
	// ErrMalformed: a /proc or cgroup file is not in the kernel's format.
	ErrMalformed = errors.New("malformed kernel file")
	// ErrNoCgroup: the cgroup is not mounted on this host or gone.
	ErrNoCgroup = errors.New("cgroup not found")
)

// Tiers that Check knows how to verify (api/v1 tier names).
const (
	TierContainer = "container"
	TierSandbox   = "sandbox"
)

// Unlimited is the value of a limit that is not set ("max", -1, or the
// kernel's page-counter maximum).
const Unlimited int64 = -1

// Report is the isolation of one live process, as the host sees it.
type Report struct {
	Pid int `json:"pid"`
	// Command is argv[0] of the process (the status Name when the command
	// line is empty, as for gVisor's stubs); Args the whole command line.
	Command string   `json:"command"`
	Args    []string `json:"args,omitempty"`
	// UID and GID are the process's IDs on the host.
	UID  IDs  `json:"uid"`
	GID  IDs  `json:"gid"`
	Caps Caps `json:"caps"`
	// NoNewPrivs is 1 when no_new_privs is set, 0 when not, -1 when the
	// kernel does not report it.
	NoNewPrivs int `json:"noNewPrivs"`
	// Seccomp is the seccomp mode: 0 off, 1 strict, 2 filter, -1 not
	// reported. SeccompFilters counts the attached filters.
	Seccomp        int `json:"seccomp"`
	SeccompFilters int `json:"seccompFilters"`
	// UIDMap and GIDMap are the process's user namespace mappings, from the
	// host's point of view (host IDs are absolute).
	UIDMap []IDMap `json:"uidMap"`
	GIDMap []IDMap `json:"gidMap"`
	// Namespaces lists each namespace of the process and whether it differs
	// from the reference (NamespaceReference: /proc/1/ns, or this process's
	// own when PID 1 cannot be read).
	Namespaces         []Namespace `json:"namespaces"`
	NamespaceReference string      `json:"namespaceReference"`
	// Cgroups are the process's cgroups with their directories on the host.
	Cgroups   []Cgroup  `json:"cgroups"`
	Resources Resources `json:"resources"`
	// Root is the mount at the process's "/"; HostMounts are the other
	// mounts that bring host files in (anything but kernel filesystems,
	// tmpfs and the standard device nodes).
	Root       Mount   `json:"root"`
	HostMounts []Mount `json:"hostMounts,omitempty"`
}

// IDs are the real, effective, saved and filesystem IDs of a process.
type IDs struct {
	Real      uint32 `json:"real"`
	Effective uint32 `json:"effective"`
	Saved     uint32 `json:"saved"`
	FS        uint32 `json:"fs"`
}

func (i IDs) all() []uint32 { return []uint32{i.Real, i.Effective, i.Saved, i.FS} }

// IDMap is one line of uid_map or gid_map: Size IDs from ContainerID on
// map to host IDs from HostID on.
type IDMap struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Size        uint32 `json:"size"`
}

// String formats m as "0→1048576+65536".
func (m IDMap) String() string { return fmt.Sprintf("%d→%d+%d", m.ContainerID, m.HostID, m.Size) }

// mapsHostID reports whether host ID id is mapped by any line of maps.
func mapsHostID(maps []IDMap, id uint32) bool {
	return slices.ContainsFunc(maps, func(m IDMap) bool {
		return id >= m.HostID && uint64(id) < uint64(m.HostID)+uint64(m.Size)
	})
}

// Namespace is one namespace of a process.
type Namespace struct {
	// Type is the /proc/PID/ns entry name: cgroup, ipc, mnt, net, pid,
	// time, user, uts.
	Type string `json:"type"`
	// ID is the link text, e.g. "pid:[4026532181]".
	ID string `json:"id"`
	// Private is true when the namespace differs from the reference's.
	Private bool `json:"private"`
}

// Mount is one line of mountinfo.
type Mount struct {
	Point  string `json:"point"`
	FSType string `json:"fsType"`
	Source string `json:"source"`
	// Root is the path inside the source filesystem that is mounted (a
	// bind mount's source directory).
	Root     string `json:"root"`
	ReadOnly bool   `json:"readOnly"`
}

// Host reads a host's /proc and cgroup filesystems. The zero value reads
// the live host; tests point FS at a fixture tree holding proc/… and
// sys/fs/cgroup/….
type Host struct {
	// FS is the host's root directory; nil means os.DirFS("/"). It must
	// implement fs.ReadLinkFS for namespace links (os.DirFS does).
	FS fs.FS
}

func (h Host) fsys() fs.FS {
	if h.FS == nil {
		return os.DirFS("/")
	}
	return h.FS
}

// readFile reads an absolute host path.
func (h Host) readFile(path string) ([]byte, error) {
	return fs.ReadFile(h.fsys(), strings.TrimPrefix(path, "/"))
}

func (h Host) readLink(path string) (string, error) {
	return fs.ReadLink(h.fsys(), strings.TrimPrefix(path, "/"))
}

func (h Host) readDir(path string) ([]fs.DirEntry, error) {
	return fs.ReadDir(h.fsys(), strings.TrimPrefix(path, "/"))
}

// procPath is /proc/PID/name.
func procPath(pid int, name string) string { return "/proc/" + strconv.Itoa(pid) + "/" + name }
