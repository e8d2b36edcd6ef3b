package cli

import (
	"cmp"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

// Replicas as users see and operate them (DESIGN §8): `rung get replicas
// [WORKLOAD[/INDEX]] [-w] [-o text|wide|json|yaml|name]` and the replica
// table of `describe workload`.

// isReplicaKind reports whether a kind argument names replicas.
func isReplicaKind(s string) bool {
	switch strings.ToLower(s) {
	case "replica", "replicas", "rp":
		return true
	}
	return false
}

// replicaTarget is what a WORKLOAD[/INDEX] argument names.
type replicaTarget struct {
	tenant, name string
	index        int // -1: every replica of the workload
}

func (t replicaTarget) String() string {
	s := t.tenant + "/" + t.name
	if t.index >= 0 {
		s += "/" + strconv.Itoa(t.index)
	}
	return s
}

// parseReplicaTarget reads TENANT/NAME[/INDEX] or NAME[/INDEX] (the tenant
// from --tenant, or the one tenant the token sees with such a workload).
func parseReplicaTarget(cmd *cobra.Command, c *client.Client, arg, tenant string) (replicaTarget, error) {
	parts := strings.Split(arg, "/")
	t := replicaTarget{index: -1}
	if n := len(parts); n >= 2 {
		if i, err := strconv.Atoi(parts[n-1]); err == nil {
			if i < 0 || i > v1.MaxReplicas {
				return t, withCode(ExitInvalid, fmt.Errorf("%q: replica index %d out of range", arg, i))
			}
			t.index, parts = i, parts[:n-1]
		}
	}
	if len(parts) > 2 || slices0(parts) {
		return t, withCode(ExitInvalid, fmt.Errorf("%q: want WORKLOAD, TENANT/WORKLOAD or TENANT/WORKLOAD/INDEX", arg))
	}
	r, err := ref(cmd, c, v1.KindWorkload, strings.Join(parts, "/"), tenant)
	if err != nil {
		return t, err
	}
	t.tenant, t.name = r.Tenant, r.Name
	return t, nil
}

func slices0(parts []string) bool {
	for _, p := range parts {
		if p == "" {
			return true
		}
	}
	return false
}

// getReplicas is `rung get replicas`.
func getReplicas(cmd *cobra.Command, c *client.Client, args []string, tenant, output string, watch bool) error {
	if !validOutput(output, "text", "wide", "json", "yaml", "name") {
		return withCode(ExitInvalid, fmt.Errorf("-o %q: use text, wide, json, yaml or name", output))
	}
	ctx, out := cmd.Context(), cmd.OutOrStdout()
	target := replicaTarget{tenant: tenant, index: -1}
	if len(args) == 1 {
		var err error
		if target, err = parseReplicaTarget(cmd, c, args[0], tenant); err != nil {
			return err
		}
	}
	keep := func(r wire.Replica) bool { return target.index < 0 || r.Index == target.index }
	if watch {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		header := output == "text" || output == "wide"
		err := c.WatchReplicas(ctx, target.tenant, target.name, func(ev wire.WatchEvent, r wire.Replica) error {
			if !keep(r) {
				return nil
			}
			if output == "json" || output == "yaml" {
				return printData(out, output, ev)
			}
			if header {
				replicaHeader(tw, output == "wide", true)
				header = false
			}
			replicaRow(tw, r, output, ev.Type)
			return tw.Flush()
		})
		return apiError(err)
	}
	rs, err := c.Replicas(ctx, target.tenant, target.name)
	if err != nil {
		return apiError(err)
	}
	items := rs[:0]
	for _, r := range rs {
		if keep(r) {
			items = append(items, r)
		}
	}
	if output == "json" || output == "yaml" {
		return printData(out, output, wire.Replicas{Items: items})
	}
	if target.index >= 0 && len(items) == 0 {
		return apiError(fmt.Errorf("replica %s not found: %w", target, client.ErrNotFound))
	}
	if len(items) == 0 && output != "name" {
		fmt.Fprintln(out, "no replicas")
		return nil
	}
	printReplicas(out, items, output)
	return nil
}

func validOutput(o string, allowed ...string) bool {
	for _, a := range allowed {
		if o == a {
			return true
		}
	}
	return o == ""
}

// printReplicas writes replicas as a table (text, wide) or names.
func printReplicas(w io.Writer, rs []wire.Replica, output string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if output != "name" {
		replicaHeader(tw, output == "wide", false)
	}
	for _, r := range rs {
		replicaRow(tw, r, output, "")
	}
	tw.Flush()
}

func replicaHeader(w io.Writer, wide, event bool) {
	h := "WORKLOAD\tREPLICA\tSTATE\tREADY\tRESTARTS\tTIER\tNODE\tAGE\tLAST ERROR"
	if wide {
		h = "WORKLOAD\tREPLICA\tSTATE\tREADY\tRESTARTS\tTIER\tNODE\tHOST\tAGE\tHEALTH\tEXIT\tCPU\tTHROTTLED\tMEMORY\tOOM\tPIDS\tIO R/W\tADDRESS\tPUBLISHED\tID\tLAST ERROR / REASON"
	}
	if event {
		h = "EVENT\t" + h
	}
	fmt.Fprintln(w, h)
}

func replicaRow(w io.Writer, r wire.Replica, output, event string) {
	if output == "name" {
		fmt.Fprintf(w, "replica/%s/%d\n", r.Workload, r.Index)
		return
	}
	if event != "" {
		fmt.Fprintf(w, "%s\t", event)
	}
	ready := "0/1"
	if r.Ready {
		ready = "1/1"
	}
	age := "-"
	if !r.StartedAt.IsZero() {
		age = shortDuration(time.Since(r.StartedAt))
	}
	msg := cmp.Or(r.LastError, "-")
	if output != "wide" {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Workload, r.Index, r.State, ready, r.Restarts,
			cmp.Or(r.Tier, "-"), cmp.Or(r.Node, "-"), age, oneLine(msg, 80))
		return
	}
	exit, cpu, throttled, mem, oom, pids, io := "-", "-", "-", "-", "-", "-", "-"
	if r.ExitCode != nil {
		exit = strconv.Itoa(*r.ExitCode)
	}
	if u := r.Usage; u != nil {
		cpu, mem, pids = fmt.Sprintf("%dm", u.MilliCPU), fmt.Sprintf("%dMi", u.Memory>>20), strconv.FormatInt(u.PIDs, 10)
		throttled = fmt.Sprintf("%.0f%%", u.Throttled*100)
		oom = strconv.FormatInt(u.OOMKills, 10)
		io = fmt.Sprintf("%dMi/%dMi", u.ReadBytes>>20, u.WriteBytes>>20)
	}
	if r.Throttled {
		throttled += " (noisy)"
	}
	if r.Reason != "" {
		msg = strings.TrimPrefix(msg+"; "+r.Reason, "-; ")
	}
	fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Workload, r.Index, r.State, ready, r.Restarts,
		cmp.Or(r.Tier, "-"), cmp.Or(r.Node, "-"), cmp.Or(r.Host, "-"), age, r.Health, exit, cpu, throttled, mem, oom, pids, io,
		cmp.Or(r.Address, "-"), cmp.Or(strings.Join(r.Published, ","), "-"), r.ID, oneLine(msg, 200))
}

// oneLine keeps a message on one table line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// shortDuration prints 45s, 12m, 3h, 5d as kubectl's AGE does.
func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// describeReplicas is the replica table of `describe workload`.
func describeReplicas(w io.Writer, rs []wire.Replica) {
	fmt.Fprintln(w, "\nReplicas:")
	if len(rs) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  REPLICA\tSTATE\tREADY\tRESTARTS\tEXIT\tHEALTH\tTIER\tNODE\tSTARTED")
	for _, r := range rs {
		exit, started := "-", "-"
		if r.ExitCode != nil {
			exit = strconv.Itoa(*r.ExitCode)
		}
		if !r.StartedAt.IsZero() {
			started = r.StartedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%v\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Index, r.State, r.Ready, r.Restarts, exit, r.Health,
			cmp.Or(r.Tier, "-"), cmp.Or(r.Node, "-"), started)
	}
	tw.Flush()
	for _, r := range rs {
		if r.LastError != "" {
			fmt.Fprintf(w, "  replica %d last error: %s\n", r.Index, r.LastError)
		}
		if r.Reason != "" && r.State == wire.ReplicaPending {
			fmt.Fprintf(w, "  replica %d: %s\n", r.Index, r.Reason)
		}
		if r.Address != "" {
			fmt.Fprintf(w, "  replica %d: address %s on its tenant network\n", r.Index, r.Address)
		}
		if len(r.Published) > 0 {
			fmt.Fprintf(w, "  replica %d: published %s on node %s's addresses (NODEPORT->PORT)\n", r.Index, strings.Join(r.Published, ", "), r.Node)
		}
	}
	describeNoisy(w, rs)
}

// describeNoisy lists the noisy-neighbour ladder's steps on the replicas
// (DESIGN §12), with the figures that triggered each.
func describeNoisy(w io.Writer, rs []wire.Replica) {
	var lines []string
	for _, r := range rs {
		if r.Throttled {
			lines = append(lines, fmt.Sprintf("  replica %d: throttled to its CPU request (noisy neighbour)", r.Index))
		}
		for _, s := range r.Noisy {
			line := fmt.Sprintf("  replica %d: %s %s: %s", r.Index, s.At.UTC().Format(time.RFC3339), s.Action, s.Reason)
			if s.Error != "" {
				line += " (failed: " + s.Error + ")"
			}
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\nNoisy neighbour:")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// describeRollout is the rollout part of `describe workload`.
func describeRollout(w io.Writer, ro *wire.Rollout) {
	fmt.Fprintf(w, "\nRollout: version %s, %d of %d replicas updated, %d ready", ro.Template, ro.Updated, ro.Replicas, ro.Ready)
	switch {
	case ro.Done:
		fmt.Fprintln(w, ", done")
	case ro.Blocked != "":
		fmt.Fprintf(w, ", blocked: %s\n", ro.Blocked)
	default:
		fmt.Fprintf(w, ", in progress (%d on an older version, %d surge)\n", ro.Old, ro.Surge)
	}
	if n := len(ro.History); n > 0 {
		fmt.Fprintf(w, "  %d earlier version(s): rung rollout history, rung rollout undo\n", n)
	}
}
