package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/app"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/verify/bench"
)

// Goal of issue 11 for exec: at most 1.2× the raw runtime's exec.
const goalExecRatio = 1.2

// benchReplicasResult is what `rung bench replicas` measured.
type benchReplicasResult struct {
	Date    time.Time
	Machine bench.Machine
	// Replicas started by one apply, and how long until all were running
	// and healthy (busybox's HEALTHCHECK passed once).
	Replicas   int
	AllHealthy time.Duration
	PerReplica time.Duration
	Exec       []benchExec
	Iterations int
}

// benchExec is exec's round trip on one tier, through rung and raw.
type benchExec struct {
	Tier      string
	Rung, Raw bench.Stats
	Ratio     float64
	MeetsGoal bool
}

func newBenchReplicasCmd() *cobra.Command {
	var replicas, iterations int
	cmd := &cobra.Command{
		Use:   "replicas [--replicas 50] [--iterations 20]",
		Short: "Apply-to-healthy time for many replicas, and exec round trips next to the raw runtime",
		Long: `Starts a control plane with its node agent on loopback in a temporary
directory (this machine stands for one node), applies one workload of
--replicas busybox replicas and measures the time until every one is
running and healthy. Then runs "exec -- true" --iterations times in a
container-tier and a sandbox-tier replica through rung's API (WebSocket,
audit entry, runtime exec) and, interleaved, with the raw "runc exec" and
"runsc exec" on the same containers, and prints medians, the ratio and
the goal (rung ≤ 1.2× raw). Needs root, runc, runsc and busybox-static.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if replicas < 1 || iterations < 1 {
				return withCode(ExitInvalid, errors.New("--replicas and --iterations must be at least 1"))
			}
			res, err := measureReplicas(cmd.Context(), replicas, iterations, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			printBenchReplicas(cmd.OutOrStdout(), res)
			return nil
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", 50, "replicas of the applied workload")
	cmd.Flags().IntVarP(&iterations, "iterations", "n", 20, "exec round trips per tier and path")
	return cmd
}

func measureReplicas(ctx context.Context, replicas, iterations int, progress io.Writer) (benchReplicasResult, error) {
	res := benchReplicasResult{Date: time.Now(), Machine: bench.ThisMachine(ctx), Replicas: replicas, Iterations: iterations}
	dir, err := os.MkdirTemp("/var/tmp", "rung-bench-replicas-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o711); err != nil { // the tenants' ranges reach their roots
		return res, err
	}
	data := filepath.Join(dir, "data")
	upCtx, stop := context.WithCancel(ctx)
	infoc := make(chan app.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Up(upCtx, app.Config{DataDir: data, Listen: "127.0.0.1:0", ClientConfig: "-", Agent: true}, nil,
			func(i app.Info) { infoc <- i })
	}()
	var info app.Info
	select {
	case info = <-infoc:
	case err := <-done:
		stop()
		return res, fmt.Errorf("control plane: %w", err)
	}
	tok, err := os.ReadFile(info.TokenFile)
	if err != nil {
		stop()
		return res, err
	}
	c, err := client.New(info.URL, strings.TrimSpace(string(tok)))
	if err != nil {
		stop()
		return res, err
	}
	set, err := v1.Decode("bench.yaml", fmt.Appendf(nil, benchReplicasManifest, replicas))
	if err != nil {
		stop()
		return res, err
	}
	defer func() {
		// Remove every replica before the control plane stops.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		for _, o := range slices.Backward(client.Objects(set)) {
			if r, err := client.RefOf(o); err == nil {
				_, _ = c.Delete(dctx, r)
			}
		}
		for dctx.Err() == nil {
			rs, err := c.Replicas(dctx, "", "")
			if err != nil || len(rs) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The agent removes what is no longer planned within a round.
		time.Sleep(3 * time.Second)
		stop()
		<-done
	}()
	start := time.Now()
	if _, err := c.ApplySet(ctx, set); err != nil {
		return res, err
	}
	for {
		rs, err := c.Replicas(ctx, "", "")
		if err != nil {
			return res, err
		}
		ready := 0
		for _, r := range rs {
			if r.Ready && (r.Health == wire.HealthHealthy || r.Health == wire.HealthNone) {
				ready++
			}
		}
		if isTerminal(progress) {
			fmt.Fprintf(progress, "\r%d/%d replicas healthy   ", ready, len(rs))
		}
		if ready == replicas+2 {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return res, fmt.Errorf("only %d of %d replicas healthy after 10 minutes", ready, replicas+2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if isTerminal(progress) {
		fmt.Fprint(progress, "\r\033[K")
	}
	res.AllHealthy = time.Since(start)
	res.PerReplica = res.AllHealthy / time.Duration(replicas+2)

	for _, tier := range []struct{ name, workload, runtime string }{
		{bench.TierContainer, "probe", "runc"},
		{bench.TierSandbox, "boxed", "runsc"},
	} {
		state := filepath.Join(data, "runtimes", tier.runtime, "state")
		rid, state, err := runtimeID(tier.runtime, state, "bench-"+tier.workload+"-0")
		if err != nil {
			return res, err
		}
		var viaRung, raw []time.Duration
		for range iterations {
			t0 := time.Now()
			code, err := c.Exec(ctx, "bench", tier.workload, 0, []string{"true"}, client.ExecIO{})
			if err != nil || code != 0 {
				return res, fmt.Errorf("%s: rung exec: code %d: %v", tier.name, code, err)
			}
			viaRung = append(viaRung, time.Since(t0))
			t0 = time.Now()
			if out, err := exec.CommandContext(ctx, tier.runtime, "--root", state, "exec", rid, "true").CombinedOutput(); err != nil {
				return res, fmt.Errorf("%s: raw exec: %v: %s", tier.name, err, out)
			}
			raw = append(raw, time.Since(t0))
		}
		e := benchExec{Tier: tier.name, Rung: bench.StatsOf(viaRung), Raw: bench.StatsOf(raw)}
		e.Ratio = float64(e.Rung.Median) / float64(e.Raw.Median)
		e.MeetsGoal = e.Ratio <= goalExecRatio
		res.Exec = append(res.Exec, e)
	}
	return res, nil
}

// runtimeID is the ID the runtime knows a replica by (runsc's carry the
// driver's scope) and the state directory that holds it: runc keeps
// STATE/ID/, runsc STATE/RID_sandbox:SANDBOX.state, in the driver's state
// directory or a sandbox's own (runtime.StateDirs).
func runtimeID(rt, state, id string) (string, string, error) {
	if rt == "runc" {
		return id, state, nil
	}
	for _, dir := range runtime.StateDirs(state) {
		files, _ := filepath.Glob(filepath.Join(dir, "*_sandbox:*.state"))
		for _, f := range files {
			rid, _, _ := strings.Cut(filepath.Base(f), "_sandbox:")
			if runtime.ContainerID(dir, rid) == id {
				return rid, dir, nil
			}
		}
	}
	return "", "", fmt.Errorf("%s has no container %s", rt, id)
}

// benchReplicasManifest: one node (this machine), a tenant, N replicas of
// a sleeping busybox, and one replica each on the container and sandbox
// tiers for exec.
const benchReplicasManifest = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: bench}
spec:
  nodes:
  - {name: local, capacity: {cpu: 64, memory: 64Gi}, runtimes: [container, sandbox]}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: bench}
spec: {organization: bench, trust: trusted, quota: {replicas: 10000}}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: many, tenant: bench}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  replicas: %d
  resources: {cpu: 10m, memory: 16Mi, pids: 16}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: probe, tenant: bench}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  resources: {cpu: 100m, memory: 32Mi}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: boxed, tenant: bench}
spec:
  image: busybox:latest
  command: [sleep, "3600"]
  resources: {cpu: 100m, memory: 32Mi}
  isolation: {minimum: sandbox}
`

func printBenchReplicas(w io.Writer, r benchReplicasResult) {
	m := r.Machine
	fmt.Fprintf(w, "rung bench replicas, %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %d CPU(s), %s, kernel %s, %s, load %s\n", m.CPUs, m.Model, m.Kernel, m.Go, m.Load)
	fmt.Fprintf(w, "\napply to all running and healthy: %d replicas (%d busybox + 2 for exec) in %s (%s per replica)\n",
		r.Replicas+2, r.Replicas, benchMs(r.AllHealthy), benchMs(r.PerReplica))
	fmt.Fprintf(w, "\nexec -- true round trip, %d runs per path, interleaved (goal: rung ≤ %.1f× raw)\n", r.Iterations, goalExecRatio)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tRUNG MEDIAN\tRUNG P90\tRAW MEDIAN\tRAW P90\tRATIO\tGOAL")
	for _, e := range r.Exec {
		goal := "met"
		if !e.MeetsGoal {
			goal = "missed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", e.Tier, benchMs(e.Rung.Median), benchMs(e.Rung.P90),
			benchMs(e.Raw.Median), benchMs(e.Raw.P90), e.Ratio, goal)
	}
	tw.Flush()
}
