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
	Date    time.Time `json:"date"`
	Load    string    `json:"load"`
	MiB     int       `json:"mib"`
	Ops     int       `json:"ops"`
	Rounds  int       `json:"rounds"`
	Tiers   []VolumeTier
	Create  time.Duration `json:"create1GiB"`
	Comment string        `json:"comment,omitempty"`
}

// VolumeTier is one tier's figures: inside a replica and, in the same
// run, from the host on the same file system (the best of the rounds).
type VolumeTier struct {
	Tier    string         `json:"tier"`
	Replica iobench.Result `json:"replica"`
	Host    iobench.Result `json:"host"`
	Ratio   [4]float64     `json:"ratio"` // replica / host: seq write, seq read, rand write, rand read
	Err     string         `json:"error,omitempty"`
}

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
interleaved for --rounds rounds, keeping each side's best. Prints both and
their ratio (replica / host), then the time to create and mount a 1 GiB
volume (image, mkfs.ext4, loop device, mount). The workload in the replica
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
	f.IntVar(&mib, "mib", 256, "size of the test file, MiB (the volume is twice that)")
	f.IntVar(&ops, "ops", 2000, "random 4 KiB operations per random job")
	f.IntVar(&rounds, "rounds", 3, "interleaved rounds of host and replica runs (the best of each is kept)")
	f.StringSliceVar(&tiers, "tiers", []string{"container", "sandbox"}, "tiers to measure")
	f.StringVar(&dir, "dir", "", "work directory (default: a new temporary directory)")
	f.StringVar(&helper, "helper", "", "static binary run inside the replica (default: this rung binary)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func benchVolume(ctx context.Context, dir, helper string, tiers []tenancy.Tier, mib, ops, rounds int) (VolumeBench, error) {
	res := VolumeBench{Date: time.Now().UTC(), MiB: mib, Ops: ops, Rounds: rounds}
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
		vt := VolumeTier{Tier: tier.String()}
		ref := volume.Ref{Tenant: "bench", Name: "io-" + tier.String(), UID: "bench"}
		size := int64(2*mib) << 20
		for round := range rounds {
			// The host on the same file system, then the replica.
			mp, err := m.Mount(ctx, ref, size, rng.HostUID, rng.HostGID)
			if err != nil {
				return res, err
			}
			h, err := iobench.Run(mp, iobench.Options{MiB: mib, Ops: ops, Seed: 1})
			if uerr := m.Unmount(ref); err == nil {
				err = uerr
			}
			if err != nil {
				return res, fmt.Errorf("host: %w", err)
			}
			vt.Host = best(vt.Host, h)
			r, err := replicaRun(ctx, n, tier, ref, size, mib, ops, round)
			if err != nil {
				vt.Err = err.Error()
				break
			}
			vt.Replica = best(vt.Replica, r)
		}
		vt.Ratio = [4]float64{ratio(vt.Replica.SeqWriteMBps, vt.Host.SeqWriteMBps), ratio(vt.Replica.SeqReadMBps, vt.Host.SeqReadMBps),
			ratio(vt.Replica.RandWriteOps, vt.Host.RandWriteOps), ratio(vt.Replica.RandReadOps, vt.Host.RandReadOps)}
		res.Tiers = append(res.Tiers, vt)
		if err := m.Delete(ctx, ref); err != nil {
			return res, err
		}
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
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Load = strings.Join(strings.Fields(string(l))[:3], " ")
	}
	return res, nil
}

// replicaRun runs the workload in a replica of tier mounting ref at /data.
func replicaRun(ctx context.Context, n *replica.Node, tier tenancy.Tier, ref volume.Ref, size int64, mib, ops, round int) (iobench.Result, error) {
	var out, errb bytes.Buffer
	s := replica.Spec{ID: fmt.Sprintf("bench-io-%s-%d", tier, round), Tenant: "bench", Tier: tier, Image: "rung-volbench:latest",
		Args: []string{"/volbench"},
		Env:  []string{iobench.ChildEnv + "=/data", iobench.SizeEnv + "=" + strconv.Itoa(mib), iobench.OpsEnv + "=" + strconv.Itoa(ops)},
		// Enough memory that the sandbox's own page cache is no excuse.
		Resources: topology.Resources{MilliCPU: 1000, Memory: 512 << 20, PIDs: 64},
		Volumes:   []replica.VolumeMount{{Name: ref.Name, UID: ref.UID, MountPath: "/data", Size: size}}}
	exit, err := n.Run(ctx, s, runtime.IO{Stdout: &out, Stderr: &errb})
	if err != nil {
		return iobench.Result{}, err
	}
	if exit.Code != 0 {
		return iobench.Result{}, fmt.Errorf("%s replica exited %d: %s", tier, exit.Code, strings.TrimSpace(errb.String()))
	}
	var r iobench.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("%s replica: %q: %w", tier, out.String(), err)
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

func best(a, b iobench.Result) iobench.Result {
	return iobench.Result{SeqWriteMBps: max(a.SeqWriteMBps, b.SeqWriteMBps), SeqReadMBps: max(a.SeqReadMBps, b.SeqReadMBps),
		RandWriteOps: max(a.RandWriteOps, b.RandWriteOps), RandReadOps: max(a.RandReadOps, b.RandReadOps), Direct: b.Direct}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func printBenchVolume(w io.Writer, r VolumeBench) {
	fmt.Fprintf(w, "rung bench volume, %s, load %s\n", r.Date.Format("2006-01-02 15:04 MST"), r.Load)
	fmt.Fprintf(w, "%d MiB file, %d random 4 KiB ops per job, O_DIRECT, best of %d interleaved rounds\n\n", r.MiB, r.Ops, r.Rounds)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tWHERE\tSEQ WRITE\tSEQ READ\tRAND WRITE\tRAND READ\tDIRECT")
	for _, t := range r.Tiers {
		if t.Err != "" {
			fmt.Fprintf(tw, "%s\treplica\terror: %s\n", t.Tier, t.Err)
		}
		for _, row := range []struct {
			where string
			x     iobench.Result
		}{{"replica", t.Replica}, {"host", t.Host}} {
			fmt.Fprintf(tw, "%s\t%s\t%.0f MB/s\t%.0f MB/s\t%.0f IOPS\t%.0f IOPS\t%v\n", t.Tier, row.where,
				row.x.SeqWriteMBps, row.x.SeqReadMBps, row.x.RandWriteOps, row.x.RandReadOps, row.x.Direct)
		}
		fmt.Fprintf(tw, "%s\tratio\t%.2f\t%.2f\t%.2f\t%.2f\t\n", t.Tier, t.Ratio[0], t.Ratio[1], t.Ratio[2], t.Ratio[3])
	}
	tw.Flush()
	fmt.Fprintf(w, "\ncreate and mount a 1 GiB volume: %v\n", r.Create.Round(time.Millisecond))
}
