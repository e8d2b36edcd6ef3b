package cli

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"

	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
	"rung.dev/rung/internal/volume"
	"rung.dev/rung/internal/volume/iobench"
)

// VolumeBench is what `rung bench volume` measured.
type VolumeBench struct {
	Date time.Time `json:"date"`
	// Load is the load average (1, 5, 15 minutes) when the run started
	// and LoadEnd when it ended: on a shared machine, read the figures
	// with it.
	Load    string        `json:"load"`
	LoadEnd string        `json:"loadEnd"`
	MiB     int           `json:"mib"`
	Ops     int           `json:"ops"`
	Rounds  int           `json:"rounds"`
	Tiers   []VolumeTier  `json:"tiers"`
	Create  time.Duration `json:"create1GiB"`
	Comment string        `json:"comment,omitempty"`
}

// VolumeTier is one tier's figures: inside a replica and, round by round
// next to it, from the host on the same file system. Each figure is the
// median of the rounds with its range; Ratio is the median of the
// round-by-round replica ÷ host ratios (in the order of iobench.Jobs).
type VolumeTier struct {
	Tier    string             `json:"tier"`
	Rounds  []iobench.Round    `json:"rounds"`
	Replica [4]iobench.Summary `json:"replica"`
	Host    [4]iobench.Summary `json:"host"`
	Ratio   [4]iobench.Summary `json:"ratio"`
	// Direct is false when the replica's runtime refused O_DIRECT in some
	// round (its reads then come from a cache).
	Direct bool   `json:"direct"`
	Err    string `json:"error,omitempty"`
}

// volumeGoal is the container tier's goal (issue 15): ≥ 0.9 of the host.
const volumeGoal = 0.9

// newBenchVolumeCmd is `rung bench volume`.
func newBenchVolumeCmd() *cobra.Command {
	var (
		mib, ops, rounds int
		tiers            []string
		dir, output      string
		helper           string
	)
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Volume throughput inside replicas next to the host on the same file system, and creation time",
		Long: `Makes a volume per tier (container: runc, sandbox: runsc) and runs the same
I/O workload (sequential 1 MiB write and read, random 4 KiB write and read,
O_DIRECT, fsync after writes: a small Go equivalent of fio) inside a replica
mounting it and directly from the host on the same mounted file system,
interleaved for --rounds rounds while one replica per tier holds the volume
mounted: each round runs the workload on the host (on the volume's mount
point) and in the replica (exec), back to back, host first in one round
and the replica first in the next, so a load that changes through the run
favours neither.
Prints each side's median with the middle half of the rounds (quartiles),
and the same of the round-by-round ratios (replica / host, each pair run
back to back; -o json has every round and the full ranges), then the time to create and mount a 1 GiB volume (image,
mkfs.ext4, loop device, mount), with the load average at the start and end. The workload in the replica
is this binary, copied into the image (it must be static: CGO_ENABLED=0).
Needs root, runc, runsc, busybox-static and e2fsprogs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mib < 8 || ops < 1 || rounds < 1 {
				return withCode(ExitInvalid, errors.New("--mib must be at least 8, --ops and --rounds at least 1"))
			}
			if output != "text" && output != "json" {
				return withCode(ExitInvalid, fmt.Errorf("-o %q: use text or json", output))
			}
			var ts []tenancy.Tier
			for _, t := range tiers {
				tier, err := tenancy.ParseTier(v1.Tier(t))
				if err != nil || (tier != tenancy.Container && tier != tenancy.Sandbox) {
					return withCode(ExitInvalid, fmt.Errorf("--tiers %q: use container and/or sandbox", t))
				}
				ts = append(ts, tier)
			}
			if helper == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				helper = exe
			}
			res, err := benchVolume(cmd.Context(), dir, helper, ts, mib, ops, rounds)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			printBenchVolume(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&mib, "mib", 64, "size of the test file, MiB (the volume is twice that)")
	f.IntVar(&ops, "ops", 1000, "random 4 KiB operations per random job")
	f.IntVar(&rounds, "rounds", 15, "interleaved rounds of host and replica runs (medians and ranges are reported)")
	f.StringSliceVar(&tiers, "tiers", []string{"container", "sandbox"}, "tiers to measure")
	f.StringVar(&dir, "dir", "", "work directory (default: a new temporary directory)")
	f.StringVar(&helper, "helper", "", "static binary run inside the replica (default: this rung binary)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func benchVolume(ctx context.Context, dir, helper string, tiers []tenancy.Tier, mib, ops, rounds int) (VolumeBench, error) {
	res := VolumeBench{Date: time.Now().UTC(), MiB: mib, Ops: ops, Rounds: rounds, Load: loadAverage()}
	if err := staticBinary(helper); err != nil {
		return res, err
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "rung-bench-volume-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	// The runtimes open the root and the volume from inside the
	// replica's user namespace: the path must be searchable.
	for p := dir; p != "/" && p != "."; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(p, st.Mode().Perm()|0o011); err != nil {
				return res, err
			}
		}
	}
	m, err := volume.Open(filepath.Join(dir, "volume"), nil)
	if err != nil {
		return res, err
	}
	defer m.UnmountAll()
	n, err := replica.Open(ctx, dir, replica.Options{Attachers: []replica.Attacher{volume.NewAttacher(m)}})
	if err != nil {
		return res, err
	}
	root := filepath.Join(dir, "image-root")
	if err := image.BusyboxRoot(root); err != nil {
		return res, err
	}
	data, err := os.ReadFile(helper)
	if err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(root, "volbench"), data, 0o755); err != nil {
		return res, err
	}
	if _, err := n.Images().Pack(ctx, root, "rung-volbench:latest", image.PackOptions{}); err != nil {
		return res, err
	}
	rng, err := n.TenantRange("bench")
	if err != nil {
		return res, err
	}
	for _, tier := range tiers {
		vt, err := benchTier(ctx, n, m, tier, mib, ops, rounds)
		if err != nil {
			return res, err
		}
		res.Tiers = append(res.Tiers, vt)
	}
	// Creation of 1 GiB: image, mkfs.ext4, loop device, mount.
	big := volume.Ref{Tenant: "bench", Name: "create-1g", UID: "bench"}
	start := time.Now()
	if _, err := m.Mount(ctx, big, 1<<30, rng.HostUID, rng.HostGID); err != nil {
		return res, err
	}
	res.Create = time.Since(start)
	if err := m.Delete(ctx, big); err != nil {
		return res, err
	}
	res.LoadEnd = loadAverage()
	return res, nil
}

// benchTier measures one tier: a replica mounting the tier's volume runs
// for the whole measurement, and each round runs the workload once on the
// host (on the volume's mount point, while the replica holds it) and once
// inside the replica (exec), back to back, alternating which goes first.
// Only a failure on the host side is an error; the replica's is the
// tier's result.
func benchTier(ctx context.Context, n *replica.Node, m *volume.Manager, tier tenancy.Tier, mib, ops, rounds int) (VolumeTier, error) {
	vt := VolumeTier{Tier: tier.String(), Direct: true}
	ref := volume.Ref{Tenant: "bench", Name: "io-" + tier.String(), UID: "bench"}
	size := int64(2*mib) << 20
	id := "bench-io-" + tier.String()
	s := replica.Spec{ID: id, Tenant: "bench", Tier: tier, Image: "rung-volbench:latest",
		Args: []string{"/bin/sleep", "86400"},
		// What the exec'd workload reads (iobench.Child).
		Env: []string{iobench.ChildEnv + "=/data", iobench.SizeEnv + "=" + strconv.Itoa(mib), iobench.OpsEnv + "=" + strconv.Itoa(ops)},
		// Enough memory that the sandbox's own page cache is no excuse.
		Resources: topology.Resources{MilliCPU: 1000, Memory: 512 << 20, PIDs: 64},
		Volumes:   []replica.VolumeMount{{Name: ref.Name, UID: ref.UID, MountPath: "/data", Size: size}}}
	if err := n.Start(ctx, s); err != nil {
		vt.Err = err.Error()
		return vt, nil
	}
	defer func() {
		_ = n.Remove(context.WithoutCancel(ctx), id)
		_ = m.Delete(context.WithoutCancel(ctx), ref)
	}()
	mp := m.MountPoint(ref)
	for round := range rounds {
		rd := iobench.Round{HostFirst: round%2 == 0}
		var hostErr, repErr error
		host := func() {
			rd.Host, hostErr = iobench.Run(mp, iobench.Options{MiB: mib, Ops: ops, Seed: 1}) // the replica's seed (iobench.Child)
		}
		inside := func() { rd.Replica, repErr = replicaExec(ctx, n, id) }
		if rd.HostFirst {
			host()
			inside()
		} else {
			inside()
			host()
		}
		if hostErr != nil {
			return vt, fmt.Errorf("host: %w", hostErr)
		}
		if repErr != nil {
			vt.Err = repErr.Error()
			break
		}
		vt.Direct = vt.Direct && rd.Replica.Direct
		vt.Rounds = append(vt.Rounds, rd)
	}
	vt.Host, vt.Replica, vt.Ratio = iobench.Compare(vt.Rounds)
	return vt, nil
}

// replicaExec runs the workload once inside replica id (the rung binary
// as /volbench, with the replica's environment).
func replicaExec(ctx context.Context, n *replica.Node, id string) (iobench.Result, error) {
	var out, errb bytes.Buffer
	code, err := n.Exec(ctx, id, []string{"/volbench"}, runtime.ExecIO{Stdout: &out, Stderr: &errb})
	if err != nil {
		return iobench.Result{}, err
	}
	if code != 0 {
		return iobench.Result{}, fmt.Errorf("%s: the workload exited %d: %s", id, code, strings.TrimSpace(errb.String()))
	}
	var r iobench.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("%s: %q: %w", id, out.String(), err)
	}
	return r, nil
}

// staticBinary refuses a helper that needs a dynamic loader: the image
// has none.
func staticBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("helper %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("helper %s is dynamically linked; build rung with CGO_ENABLED=0 (make does) or pass --helper", path)
		}
	}
	return nil
}

// loadAverage is /proc/loadavg's three averages ("" where unreadable).
func loadAverage() string {
	l, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(l)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

func printBenchVolume(w io.Writer, r VolumeBench) {
	fmt.Fprintf(w, "rung bench volume, %s, %d CPUs, load average %s at the start, %s at the end\n", r.Date.Format("2006-01-02 15:04 MST"), goruntime.NumCPU(), r.Load, r.LoadEnd)
	fmt.Fprintf(w, "%d MiB file, %d random 4 KiB ops per job, O_DIRECT, fsync after writes; %d interleaved rounds: median [middle half of the rounds]\n\n", r.MiB, r.Ops, r.Rounds)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tWHERE\tSEQ WRITE MB/s\tSEQ READ MB/s\tRAND WRITE IOPS\tRAND READ IOPS\t")
	for _, t := range r.Tiers {
		if t.Err != "" {
			fmt.Fprintf(tw, "%s\treplica\terror after %d round(s): %s\n", t.Tier, len(t.Rounds), t.Err)
		}
		if len(t.Rounds) == 0 {
			continue
		}
		for _, row := range []struct {
			where string
			x     [4]iobench.Summary
			f     string
		}{{"replica", t.Replica, "%.0f [%.0f–%.0f]"}, {"host", t.Host, "%.0f [%.0f–%.0f]"}, {"ratio", t.Ratio, "%.2f [%.2f–%.2f]"}} {
			fmt.Fprintf(tw, "%s\t%s", t.Tier, row.where)
			for _, s := range row.x {
				fmt.Fprintf(tw, "\t"+row.f, s.Median, s.Q1, s.Q3)
			}
			fmt.Fprintln(tw, "\t")
		}
	}
	tw.Flush()
	for _, t := range r.Tiers {
		if len(t.Rounds) == 0 {
			continue
		}
		if !t.Direct {
			fmt.Fprintf(w, "%s: the runtime refused O_DIRECT: its reads come from its cache\n", t.Tier)
		}
		if t.Tier != tenancy.Container.String() {
			continue
		}
		var parts []string
		for i, s := range t.Ratio {
			parts = append(parts, fmt.Sprintf("%s %s", iobench.Jobs[i], iobench.Verdict(s, volumeGoal)))
		}
		fmt.Fprintf(w, "\ncontainer ≥ %.1f× the host (round-by-round ratios): %s\n", volumeGoal, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "\ncreate and mount a 1 GiB volume: %v\n", r.Create.Round(time.Millisecond))
}
