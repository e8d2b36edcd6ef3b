package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/verify"
)

// newVerifyCmd is `rung verify`: the proof of the running replicas'
// isolation, read from their live processes.
func newVerifyCmd() *cobra.Command {
	var dataDir, output string
	cmd := &cobra.Command{
		Use:   "verify [--data-dir DIR] [ID...] [-o json]",
		Short: "Prove the running replicas' isolation from their live processes",
		Long: `Lists the replicas that runc and runsc run under the data directory
(DIR/runtimes/runc and DIR/runtimes/runsc, as rung run and the agent create
them), reads each one's live processes from /proc and its cgroup files, and
checks every hardening property of its tier against its spec: not host root,
the tenant's UID map, capabilities, no_new_privs, seccomp, namespaces,
read-only root, no host mounts, memory/swap/PIDs/CPU limits.

A sandbox replica is proven from gVisor's host processes (sentry, ptrace
stubs, gofer); what gVisor enforces inside is listed as such. A vm replica
(DIR/runtimes/vm) is proven from its QEMU process (the replica's uid, no
capabilities, no_new_privs, QEMU's seccomp sandbox, its own namespaces, the
cgroup limits) and the kernel its guest reported, which must not be the
host's; one run under TCG emulation (--allow-emulated-vm) is WEAK: no
hardware boundary. Exit 0 when
every property of every running replica holds, 1 when any fails or cannot
be read. A stopped replica is listed (with "OOM-killed" when its cgroup
counted an OOM kill) and fails nothing.`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			if output != "text" && output != "json" {
				return withCode(ExitInvalid, fmt.Errorf("-o %q: use text or json", output))
			}
			replicas, err := verifyReplicas(cmd.Context(), dataDir, ids)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					Replicas []verify.Replica `json:"replicas"`
				}{replicas}); err != nil {
					return err
				}
			} else {
				printVerifyTable(out, replicas)
			}
			for _, r := range replicas {
				if !r.Holds() {
					return silent{code: ExitFailure}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", defaultImageDataDir, "rung's data directory (runtime state in DIR/runtimes)")
	f.StringVar(&dataDir, "root", defaultImageDataDir, "same as --data-dir")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// verifyRuntimes are the OCI runtimes whose replicas verify inspects, with
// their directory under DATA/runtimes (internal/replica's layout).
func verifyRuntimes() []string { return []string{"runc", "runsc"} }

// verifyReplicas inspects the replicas of every runtime under dataDir, or
// only those named by ids (each must exist).
func verifyReplicas(ctx context.Context, dataDir string, ids []string) ([]verify.Replica, error) {
	var out []verify.Replica
	found := map[string]bool{}
	for _, kind := range verifyRuntimes() {
		dir := filepath.Join(dataDir, "runtimes", kind)
		state := filepath.Join(dir, "state")
		if _, err := os.Stat(state); errors.Is(err, os.ErrNotExist) {
			continue
		}
		// The binary the node ran, else the one in PATH.
		bin, err := runtime.RecordedBinary(dir), error(nil)
		if bin == "" {
			bin, err = exec.LookPath(kind)
		}
		if err != nil {
			// Replicas may be running that nothing here can inspect: fail.
			return nil, fmt.Errorf("verify: %s has state in %s but is not installed: %w", kind, state, err)
		}
		listed, err := verify.List(ctx, bin, state)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if len(listed) == 0 {
			continue
		}
		d, err := newInspectDriver(kind, dir, bin)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		for _, l := range listed {
			if len(ids) > 0 && !slices.Contains(ids, l.ID) {
				continue
			}
			found[l.ID] = true
			r, err := verify.Host{}.Replica(ctx, d, l.ID)
			if errors.Is(err, runtime.ErrNotFound) {
				// Deleted since the list, or a container rung can't reach:
				// one still listed would run unproven, so that fails.
				again, lerr := verify.List(ctx, bin, state)
				if lerr == nil && !slices.ContainsFunc(again, func(x verify.Listed) bool { return x.ID == l.ID }) {
					continue
				}
				return nil, fmt.Errorf("verify: %s is listed by %s in %s but can't be inspected: %w", l.ID, kind, state, err)
			}
			if err != nil {
				return nil, err
			}
			if err := verifyNetwork(ctx, dataDir, &r); err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	vms, err := verifyVMs(ctx, dataDir, ids, found)
	if err != nil {
		return nil, err
	}
	out = append(out, vms...)
	for _, id := range ids {
		if !found[id] {
			return nil, fmt.Errorf("verify: no replica %q under %s", id, dataDir)
		}
	}
	verify.SeparateSentries(out)
	slices.SortFunc(out, func(a, b verify.Replica) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// verifyVMs proves the vm tier's replicas under DATA/runtimes/vm from
// their state files and QEMU processes.
func verifyVMs(ctx context.Context, dataDir string, ids []string, found map[string]bool) ([]verify.Replica, error) {
	dir := filepath.Join(dataDir, "runtimes", "vm")
	if _, err := os.Stat(filepath.Join(dir, "vms")); err != nil {
		return nil, nil
	}
	d, err := microvm.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	host := hostKernel()
	var out []verify.Replica
	for _, id := range d.Records() {
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		st, err := d.Status(id)
		if err != nil {
			continue // removed meanwhile
		}
		found[id] = true
		v := verify.VM{ID: id, Bundle: st.Bundle, Pid: st.Pid, UID: st.UID, Memory: st.Limits.CgroupMem,
			CPUQuota: st.Limits.CPUQuota, CPUPeriod: int64(st.Limits.CPUPeriod), Pids: st.Limits.PIDs,
			HostKernel: host, Emulated: st.Emulated}
		if st.Guest.Release != "" {
			v.GuestKernel = st.Guest.Release + " " + st.Guest.Version
		}
		if spec, err := bundle.Read(st.Bundle); err == nil {
			v.Tenant = spec.Annotations[verify.AnnotationTenant]
		}
		r, err := verify.Host{}.VMReplica(ctx, v)
		if err != nil {
			if _, running := d.Running(id); !running {
				continue // stopped meanwhile
			}
			return nil, fmt.Errorf("verify: vm %s: %w", id, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// hostKernel is the host's "release version", as a guest's is reported.
func hostKernel() string {
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	ver, _ := os.ReadFile("/proc/sys/kernel/version")
	return strings.TrimSpace(string(rel)) + " " + strings.TrimSpace(string(ver))
}

// newInspectDriver opens the driver whose Config.Dir is dir, to read the
// state and host processes of its containers.
func newInspectDriver(kind, dir, bin string) (*runtime.OCI, error) {
	if kind == "runsc" {
		return runtime.NewRunsc(runtime.Config{Dir: dir, Binary: bin})
	}
	return runtime.NewRunc(runtime.Config{Dir: dir, Binary: bin})
}

// printVerifyTable writes one row per replica and host process role (runsc's
// stubs folded into one row), then every failing property, then what a
// sandbox's proof covers.
func printVerifyTable(w io.Writer, replicas []verify.Replica) {
	if len(replicas) == 0 {
		fmt.Fprintln(w, "no replicas")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIER\tPROCESS\tPID\tUID MAP\tCAPEFF\tNNP\tSECCOMP\tRO-ROOT\tMEMORY\tPIDS\tCPU\tVERDICT")
	sandbox := false
	for _, r := range replicas {
		sandbox = sandbox || len(r.Inside) > 0
		verdict := "ok"
		switch {
		case !r.Holds():
			verdict = fmt.Sprintf("FAIL (%d)", len(r.Failures())+len(r.Problems))
		case r.Status == runtime.Stopped && r.OOMKilled():
			verdict = "stopped, OOM-killed"
		case r.Status == runtime.Stopped:
			verdict = "stopped"
		case len(r.Weaknesses) > 0:
			verdict = "WEAK (see below)"
		}
		if len(r.Processes) == 0 {
			res := r.Resources
			fmt.Fprintf(tw, "%s\t%s\t-\t%d\t-\t-\t-\t-\t-\t%s\t%s\t%s\t%s\n", r.ID, r.Tier, r.Pid,
				verifyLimit(res.MemoryLimit), verifyLimit(res.PidsLimit), verifyCPU(res), verdict)
			continue
		}
		first := true
		for _, row := range verifyRows(r.Processes) {
			p := row.Report
			id, tier, v := "", "", ""
			if first {
				id, tier, v = r.ID, r.Tier, verdict
				first = false
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%v\t%s\t%s\t%s\t%s\n",
				id, tier, row.label, p.Pid, verifyIDMaps(p.UIDMap), p.Caps.Effective, p.NoNewPrivs, p.Seccomp, p.Root.ReadOnly,
				verifyLimit(p.Resources.MemoryLimit), verifyLimit(p.Resources.PidsLimit), verifyCPU(p.Resources), v)
		}
	}
	tw.Flush()
	for _, r := range replicas {
		for _, p := range r.Problems {
			fmt.Fprintf(w, "FAIL %s: %s\n", r.ID, p)
		}
		for _, f := range r.Failures() {
			fmt.Fprintf(w, "FAIL %s %s pid %d %s: got %s, want %s\n", r.ID, f.Role, f.Pid, f.Property, f.Got, f.Want)
		}
	}
	weak := map[string][]string{} // weakness → replicas
	var order []string
	for _, r := range replicas {
		for _, s := range r.Weaknesses {
			if weak[s] == nil {
				order = append(order, s)
			}
			weak[s] = append(weak[s], r.ID)
		}
	}
	for _, s := range order {
		fmt.Fprintf(w, "WEAK %s: %s\n", strings.Join(weak[s], ", "), s)
	}
	for _, r := range replicas {
		if r.SentryUID != nil {
			fmt.Fprintf(w, "sentry %s: host uid %d\n", r.ID, *r.SentryUID)
		}
	}
	for _, r := range replicas {
		if n := r.Network; n != nil {
			where := ""
			if n.Netstack {
				where = " (held by gVisor's netstack; the namespace's eth0 has none)"
			}
			fmt.Fprintf(w, "\nnetwork %s: address %s%s, netns inode %d (node's %d), link %s\n", r.ID, n.Address, where, n.NetNSInode, n.HostNetNSInode, n.Interface)
			for _, rule := range n.Rules {
				fmt.Fprintf(w, "  %s\n", rule)
			}
		}
	}
	if sandbox {
		for _, r := range replicas {
			if len(r.Inside) == 0 {
				continue
			}
			fmt.Fprintln(w, "\nsandbox replicas: proven from the host:")
			for _, s := range r.HostSide {
				fmt.Fprintf(w, "  - %s\n", s)
			}
			fmt.Fprintln(w, "enforced by gVisor inside the sandbox (not visible from the host):")
			for _, s := range r.Inside {
				fmt.Fprintf(w, "  - %s\n", s)
			}
			break
		}
	}
}

// verifyRow is one table row: a process, or runsc's stubs folded.
type verifyRow struct {
	label  string
	Report verify.Report
}

// verifyRows lists the processes in role order, folding all stubs into
// one row labelled "stub×N" (they are checked one by one).
func verifyRows(ps []verify.Process) []verifyRow {
	var out []verifyRow
	stubs := 0
	for _, p := range ps {
		if p.Role == verify.RoleStub {
			stubs++
			if stubs > 1 {
				continue
			}
		}
		out = append(out, verifyRow{label: p.Role, Report: p.Report})
	}
	for i := range out {
		if out[i].label == verify.RoleStub && stubs > 1 {
			out[i].label = fmt.Sprintf("stub×%d", stubs)
		}
	}
	return out
}

func verifyIDMaps(maps []verify.IDMap) string {
	s := make([]string, len(maps))
	for i, m := range maps {
		s[i] = m.String()
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// verifyLimit formats a byte or count limit: "64Mi", "256", "unlimited".
func verifyLimit(v int64) string {
	switch {
	case v == verify.Unlimited:
		return "unlimited"
	case v == 0:
		return "?"
	case v >= 1<<30 && v%(1<<30) == 0:
		return fmt.Sprintf("%dGi", v>>30)
	case v >= 1<<20 && v%(1<<20) == 0:
		return fmt.Sprintf("%dMi", v>>20)
	}
	return fmt.Sprint(v)
}

// verifyCPU formats the CFS quota as cores in Kubernetes style ("500m").
func verifyCPU(r verify.Resources) string {
	switch {
	case r.CPUQuota == verify.Unlimited:
		return "unlimited"
	case r.CPUQuota <= 0 || r.CPUPeriod <= 0:
		return "?"
	}
	return fmt.Sprintf("%dm", r.CPUQuota*1000/r.CPUPeriod)
}

// verifyNetwork adds replica r's tenant network, read from the kernel;
// what does not match its record fails the replica.
func verifyNetwork(ctx context.Context, dataDir string, r *verify.Replica) error {
	if r.Pid == 0 {
		return nil
	}
	in, ok, err := nodenet.Inspect(ctx, dataDir, r.ID, r.Pid, r.Tier == tenancy.Sandbox.String())
	if err != nil {
		return fmt.Errorf("verify %s: network: %w", r.ID, err)
	}
	if !ok {
		return nil
	}
	r.Network = &verify.Network{Address: in.Address, Interface: in.Interface, NetNSInode: in.NetNSInode, HostNetNSInode: in.HostNetNSInode, Rules: in.Rules, Netstack: in.Netstack}
	for _, p := range in.Problems {
		r.Problems = append(r.Problems, "network: "+p)
	}
	return nil
}
