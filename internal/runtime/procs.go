package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// HostProcess is a host process that makes up a container, as seen from
// the host: what `rung verify` reads /proc/PID/status of.
type HostProcess struct {
	Pid int `json:"pid"`
	// Role is "init" (runc: the container's init; its children are
	// "process"), or for runsc "sandbox" (the gVisor kernel, the sentry),
	// "stub" (its ptrace platform stubs and helpers) and "gofer" (the file
	// proxy).
	Role string `json:"role"`
}

// HostProcesses lists the host processes of a created or running container.
func (d *OCI) HostProcesses(ctx context.Context, id string) ([]HostProcess, error) {
	st, err := d.State(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.Pid <= 0 {
		return nil, fmt.Errorf("%s processes %s: %w", d.kind, id, ErrNotRunning)
	}
	children := childMap()
	top, sub := "init", "process"
	if d.kind == "runsc" {
		top, sub = "sandbox", "stub"
	}
	out := []HostProcess{{Pid: st.Pid, Role: top}}
	for _, p := range descendants(children, st.Pid) {
		out = append(out, HostProcess{Pid: p, Role: sub})
	}
	if d.kind == "runsc" {
		root, bundleDir := d.state, st.Bundle
		if b, _ := d.loadBox(id); b != nil {
			root, bundleDir = d.boxState(id), d.boxBundle(id)
		}
		for _, pid := range d.gofers(root, bundleDir) {
			out = append(out, HostProcess{Pid: pid, Role: "gofer"})
		}
	}
	return out, nil
}

// gofers finds runsc gofer processes of state directory root for a bundle
// by their command line ("runsc-gofer --root=STATE ... gofer --bundle DIR").
func (d *OCI) gofers(root, bundleDir string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(b, []byte("runsc-gofer\x00")) {
			continue
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		if slices.ContainsFunc(args, func(a []byte) bool { return string(a) == "--root="+root }) &&
			slices.ContainsFunc(args, func(a []byte) bool { return string(a) == bundleDir }) {
			out = append(out, pid)
		}
	}
	return out
}

// childMap maps each PID to its children, from /proc/*/stat.
func childMap() map[int][]int {
	m := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := ppidOf(pid); pp > 0 {
			m[pp] = append(m[pp], pid)
		}
	}
	return m
}

func descendants(children map[int][]int, pid int) []int {
	var out []int
	for _, c := range children[pid] {
		out = append(out, c)
		out = append(out, descendants(children, c)...)
	}
	return out
}
