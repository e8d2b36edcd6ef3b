package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
)

// `rung get` and `rung describe` in kubectl's manner: one table of kinds
// (singular, plural and short names), NAME arguments that filter, --tenant
// honoured by every kind that has tenants, and -o text|wide|json|yaml|name
// with the API's own fields.

// Output formats of get and describe.
const (
	outText = "text"
	outWide = "wide"
	outYAML = "yaml"
	outName = "name"
)

var getOutputs = []string{outText, outWide, outJSON, outYAML, outName}

// checkOutput refuses an -o that the command does not print.
func checkOutput(o string, allowed []string) error {
	if o == "" || slices.Contains(allowed, o) {
		return nil
	}
	return withCode(ExitInvalid, fmt.Errorf("-o %q: use %s", o, strings.Join(allowed, ", ")))
}

// listOptions are what a kind's lister is asked for.
type listOptions struct {
	// tenant is --tenant ("" for every tenant the token may see).
	tenant string
	// names are the NAME arguments (none: all).
	names []string
	// limit and cont ask for one page (--limit, --continue); next is
	// set to the following page's --continue.
	limit int
	cont  string
	next  *string
}

// list lists kind as o asks: every object, or one page.
func (o listOptions) list(ctx context.Context, c *client.Client, kind, tenant string) (wire.List, error) {
	if o.limit == 0 && o.cont == "" {
		return c.List(ctx, kind, tenant)
	}
	l, err := c.ListPage(ctx, kind, tenant, o.limit, o.cont)
	if err == nil && o.next != nil {
		*o.next = l.Continue
	}
	return l, err
}

// table is a kind's answer.
type table struct {
	header, wide []string
	rows         []tableRow
	// data, when set, is what -o json|yaml prints without NAME arguments
	// (the API's whole answer, as `get plan` has always printed it).
	data any
	// text, when set, prints -o text instead of the rows.
	text func(io.Writer)
	// footer follows a text table.
	footer string
}

// tableRow is one object.
type tableRow struct {
	// name is what NAME arguments match and -o name prints: TENANT/NAME
	// for an object of a tenant.
	name string
	// obj is the object with the API's fields, for -o json|yaml.
	obj         any
	cells, more []string
}

// kindInfo is one kind of `rung get`. To add a kind, add an entry to
// getKinds.
type kindInfo struct {
	singular, plural string
	short            []string
	// apiKind is the stored kind (v1.KindWorkload...), "" for a view
	// (plan, events, nodes) that describe and delete don't take.
	apiKind string
	// tenanted kinds take --tenant; the others refuse it.
	tenanted bool
	// list gives the rows the generic get prints, filters and completes.
	list func(ctx context.Context, c *client.Client, o listOptions) (table, error)
	// get, when set, is the whole of `rung get KIND` for a kind that
	// prints itself (replicas: -w, one WORKLOAD[/INDEX]); list still
	// serves completion.
	get func(cmd *cobra.Command, c *client.Client, args []string, tenant, output string, watch bool) error
}

// getKinds is every kind `rung get` knows, in the order help lists them.
var getKinds = []*kindInfo{
	{singular: "tenant", plural: "tenants", short: []string{"tn"}, apiKind: v1.KindTenant, tenanted: true, list: listTenants},
	{singular: "workload", plural: "workloads", short: []string{"wl"}, apiKind: v1.KindWorkload, tenanted: true, list: listWorkloads},
	{singular: "topology", plural: "topologies", short: []string{"topo"}, apiKind: v1.KindTopology, list: listTopologies},
	{singular: "policy", plural: "policies", short: []string{"pol"}, apiKind: v1.KindPolicy, list: listPolicies},
	{singular: "volume", plural: "volumes", short: []string{"vol"}, apiKind: v1.KindVolume, tenanted: true, list: listVolumes}, // volume.go
	{singular: "plan", plural: "plan", tenanted: true, list: listPlan},
	{singular: "event", plural: "events", short: []string{"ev"}, tenanted: true, list: listEvents},
	{singular: "node", plural: "nodes", short: []string{"no"}, list: listNodes},
	{singular: "replica", plural: "replicas", short: []string{"rp"}, tenanted: true, list: listReplicas, get: getReplicas}, // replicas.go
}

// listReplicas names each replica and its workload, for completion.
func listReplicas(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	rs, err := c.Replicas(ctx, o.tenant, "")
	if err != nil {
		return table{}, err
	}
	var t table
	for _, r := range rs {
		t.rows = append(t.rows, tableRow{name: r.Workload, obj: r}, tableRow{name: fmt.Sprintf("%s/%d", r.Workload, r.Index), obj: r})
	}
	return t, nil
}

// kindNames lists the kinds as help and errors name them.
func kindNames(stored bool) []string {
	var out []string
	for _, k := range getKinds {
		if !stored || k.apiKind != "" {
			out = append(out, k.plural)
		}
	}
	return out
}

// lookupKind reads a kind as users type it: workload, workloads, wl...
// stored limits it to the kinds describe and delete take.
func lookupKind(s string, stored bool) (*kindInfo, error) {
	s = strings.ToLower(s)
	for _, k := range getKinds {
		if (s == k.singular || s == k.plural || slices.Contains(k.short, s)) && (!stored || k.apiKind != "") {
			return k, nil
		}
	}
	return nil, withCode(ExitInvalid, fmt.Errorf("unknown kind %q: use %s", s, strings.Join(kindNames(stored), ", ")))
}

// kindOf reads a stored kind as users type it and returns its API kind.
func kindOf(s string) (string, error) {
	k, err := lookupKind(s, true)
	if err != nil {
		return "", err
	}
	return k.apiKind, nil
}

// matches reports whether NAME argument arg names row name: exactly, or
// by its own name when the row is TENANT/NAME.
func matches(name, arg string) bool {
	if name == arg {
		return true
	}
	_, own, ok := strings.Cut(name, "/")
	return ok && !strings.Contains(arg, "/") && own == arg
}

// pick keeps the rows named by names (all without names) and returns the
// names that matched nothing.
func pick(rows []tableRow, names []string) (kept []tableRow, missing []string) {
	if len(names) == 0 {
		return rows, nil
	}
	found := make([]bool, len(names))
	for _, r := range rows {
		hit := false
		for i, n := range names {
			if matches(r.name, n) {
				hit, found[i] = true, true
			}
		}
		if hit {
			kept = append(kept, r)
		}
	}
	for i, n := range names {
		if !found[i] {
			missing = append(missing, n)
		}
	}
	return kept, missing
}

func newGetCmd() *cobra.Command {
	var (
		cf             clientFlags
		output, tenant string
		watch          bool
		limit          int
		cont, next     string
	)
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...]",
		Short: "List objects of a kind, or only those named",
		Long: `Lists the objects of a kind that you may see, or only the ones named: a
workload is TENANT/NAME, or NAME alone when --tenant is given or the name
is unique. Kinds (singular, plural or short name):

  tenants (tn), workloads (wl), topologies (topo), policies (pol),
  plan (the scheduler's current placements, as rung plan prints them),
  events (ev: the latest changes and denials), nodes (no: operators only),
  replicas (rp: each replica's state, restarts and last error; one
  WORKLOAD[/INDEX] at most; -w watches).

Workloads are listed with their placements from the current plan; -o json
and -o yaml carry them too, under status. -o wide adds columns, -o name
prints KIND/NAME lines for scripts. Exit 1 when a named object is not
found (the others are still printed), 2 on a usage error.`,
		Example: `  rung get workloads
  rung get wl biology/sequencer -o yaml
  rung get events --tenant biology
  rung get nodes -o wide
  rung get rp biology/sequencer -w`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeNames(&cf, &tenant, false, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, getOutputs); err != nil {
				return err
			}
			k, err := lookupKind(args[0], false)
			if err != nil {
				return err
			}
			if tenant != "" && !k.tenanted {
				return withCode(ExitInvalid, fmt.Errorf("--tenant: %s belong to no tenant; leave it out", k.plural))
			}
			if watch && k.get == nil {
				if k.plural == "nodes" {
					c, err := cf.client()
					if err != nil {
						return err
					}
					return watchNodes(cmd, c, output)
				}
				if k.plural == "events" {
					c, err := cf.client()
					if err != nil {
						return err
					}
					return watchEvents(cmd, c, tenant, output)
				}
				if k.apiKind == "" {
					return withCode(ExitInvalid, fmt.Errorf("-w: %s can't be watched; watch replicas, events or stored objects", k.plural))
				}
				c, err := cf.client()
				if err != nil {
					return err
				}
				return watchObjects(cmd, c, k.apiKind, tenant, output)
			}
			if k.get != nil && len(args) > 2 {
				return withCode(ExitInvalid, fmt.Errorf("%s: name one WORKLOAD[/INDEX] at most", k.plural))
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			if k.get != nil {
				return k.get(cmd, c, args[1:], tenant, output, watch)
			}
			names := args[1:]
			if limit < 0 || limit > 1000 {
				return withCode(ExitInvalid, fmt.Errorf("--limit %d: give 1 to 1000", limit))
			}
			t, err := k.list(cmd.Context(), c, listOptions{tenant: tenant, names: names, limit: limit, cont: cont, next: &next})
			if err != nil {
				return apiError(err)
			}
			if next != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more: add --continue %s\n", next)
			}
			rows, missing := pick(t.rows, names)
			if err := printTable(cmd.OutOrStdout(), k, t, rows, output, names, tenant); err != nil {
				return err
			}
			if len(missing) > 0 {
				for _, n := range missing {
					fmt.Fprintf(cmd.ErrOrStderr(), "rung: %s %q not found\n", k.singular, n)
				}
				return silent{code: ExitFailure}
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", outText, "output format: "+strings.Join(getOutputs, ", "))
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's objects (tenants, workloads, plan, events, replicas)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after listing, print changes as they happen (replicas)")
	cmd.Flags().IntVar(&limit, "limit", 0, "list one page of at most this many objects (tenants, workloads, topologies, policies; see --continue)")
	cmd.Flags().StringVar(&cont, "continue", "", "the next page of a list, as the previous page printed")
	return cmd
}

// printTable prints rows of kind k in format output.
func printTable(w io.Writer, k *kindInfo, t table, rows []tableRow, output string, names []string, tenant string) error {
	switch output {
	case outJSON, outYAML:
		if t.data != nil && len(names) == 0 {
			return printData(w, output, t.data)
		}
		if len(names) == 1 && len(rows) == 1 {
			return printData(w, output, rows[0].obj)
		}
		items := make([]any, 0, len(rows))
		for _, r := range rows {
			items = append(items, r.obj)
		}
		return printData(w, output, map[string]any{"items": items})
	case outName:
		var seen []string
		for _, r := range rows {
			if n := k.singular + "/" + r.name; !slices.Contains(seen, n) {
				seen = append(seen, n)
				fmt.Fprintln(w, n)
			}
		}
		return nil
	}
	if t.text != nil && output != outWide && len(names) == 0 {
		t.text(w)
		return nil
	}
	if len(rows) == 0 {
		if len(names) > 0 {
			return nil
		}
		where := ""
		if tenant != "" {
			where = " in tenant " + tenant
		}
		fmt.Fprintf(w, "no %s%s\n", k.plural, where)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := t.header
	if output == outWide {
		header = append(slices.Clone(header), t.wide...)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := r.cells
		if output == outWide {
			cells = append(slices.Clone(cells), r.more...)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t.footer != "" {
		fmt.Fprintln(w, t.footer)
	}
	return nil
}

// decodeItems decodes a list's objects into T.
func decodeItems[T any](l wire.List) ([]T, error) {
	out := make([]T, 0, len(l.Items))
	for _, it := range l.Items {
		var o T
		if err := json.Unmarshal(it.Object, &o); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func listTenants(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	l, err := o.list(ctx, c, v1.KindTenant, "")
	if err != nil {
		return table{}, err
	}
	ts, err := decodeItems[v1.Tenant](l)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"NAME", "ORGANIZATION", "TRUST", "QUOTA CPU", "QUOTA MEMORY", "QUOTA REPLICAS"},
		wide: []string{"DEDICATED", "MINIMUM TIER", "REGISTRIES"}}
	for _, x := range ts {
		if o.tenant != "" && x.Metadata.Name != o.tenant {
			continue
		}
		q := x.Spec.Quota
		t.rows = append(t.rows, tableRow{name: x.Metadata.Name, obj: x,
			cells: []string{x.Metadata.Name, cmp.Or(x.Spec.Organization, "-"), cmp.Or(string(x.Spec.Trust), "-"), qty(q.CPU), qty(q.Memory), cmp.Or(fmt.Sprint(q.Replicas), "-")},
			more:  []string{fmt.Sprint(x.Spec.Dedicated), cmp.Or(string(x.Spec.Isolation.Minimum), "-"), cmp.Or(strings.Join(x.Spec.Images.Registries, ","), "-")}})
	}
	return t, nil
}

// workloadStatus is what the plan says of a workload, printed with it.
type workloadStatus struct {
	Placements []scheduler.Placement `json:"placements"`
	Unplaced   []scheduler.Unplaced  `json:"unplaced"`
}

// workloadOut is a workload as -o json|yaml prints it: the API's object
// and, under status, the placements the text shows.
type workloadOut struct {
	v1.Workload
	Status workloadStatus `json:"status"`
}

func listWorkloads(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	l, err := o.list(ctx, c, v1.KindWorkload, o.tenant)
	if err != nil {
		return table{}, err
	}
	ws, err := decodeItems[v1.Workload](l)
	if err != nil {
		return table{}, err
	}
	res, err := c.Plan(ctx)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"TENANT", "NAME", "REPLICAS", "PLACED", "TIERS", "NODES"},
		wide: []string{"IMAGE", "RESTART", "MINIMUM TIER"}}
	plan := byWorkload(res)
	for _, w := range ws {
		key := w.Metadata.Tenant + "/" + w.Metadata.Name
		st := workloadStatus{Placements: []scheduler.Placement{}, Unplaced: []scheduler.Unplaced{}}
		for _, p := range res.Placements {
			if p.Workload == key {
				st.Placements = append(st.Placements, p)
			}
		}
		for _, u := range res.Unplaced {
			if u.Workload == key {
				st.Unplaced = append(st.Unplaced, u)
			}
		}
		n := v1.DefaultReplicas
		if w.Spec.Replicas != nil {
			n = *w.Spec.Replicas
		}
		p := plan[key]
		if p == nil {
			p = &placed{tiers: map[string]int{}}
		}
		nodes := slices.Compact(slices.Sorted(slices.Values(p.nodes)))
		t.rows = append(t.rows, tableRow{name: key, obj: workloadOut{Workload: w, Status: st},
			cells: []string{w.Metadata.Tenant, w.Metadata.Name, fmt.Sprint(n), fmt.Sprintf("%d/%d", len(p.nodes), n), p.tierList(), cmp.Or(strings.Join(nodes, ","), "-")},
			more:  []string{w.Spec.Image, string(cmp.Or(w.Spec.RestartPolicy, v1.RestartAlways)), cmp.Or(string(w.Spec.Isolation.Minimum), "-")}})
	}
	return t, nil
}

func listTopologies(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	l, err := o.list(ctx, c, v1.KindTopology, "")
	if err != nil {
		return table{}, err
	}
	ts, err := decodeItems[v1.Topology](l)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"NAME", "NODES", "EXTRA LEVELS"}, wide: []string{"VM NODES", "DEDICATED NODES"}}
	for _, x := range ts {
		vms, ded := 0, 0
		for _, n := range x.Spec.Nodes {
			if n.Host != "" {
				vms++
			}
			if n.Tenant != "" {
				ded++
			}
		}
		t.rows = append(t.rows, tableRow{name: x.Metadata.Name, obj: x,
			cells: []string{x.Metadata.Name, fmt.Sprint(len(x.Spec.Nodes)), cmp.Or(strings.Join(x.Spec.Levels, ","), "-")},
			more:  []string{fmt.Sprint(vms), fmt.Sprint(ded)}})
	}
	return t, nil
}

func listPolicies(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	l, err := o.list(ctx, c, v1.KindPolicy, "")
	if err != nil {
		return table{}, err
	}
	ps, err := decodeItems[v1.Policy](l)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"NAME", "RULES", "TIER OVERHEADS"}, wide: []string{"RULE NAMES"}}
	for _, x := range ps {
		var rules []string
		for _, r := range x.Spec.Rules {
			rules = append(rules, r.Name)
		}
		t.rows = append(t.rows, tableRow{name: x.Metadata.Name, obj: x,
			cells: []string{x.Metadata.Name, fmt.Sprint(len(x.Spec.Rules)), fmt.Sprint(len(x.Spec.TierOverhead))},
			more:  []string{cmp.Or(strings.Join(rules, ","), "-")}})
	}
	return t, nil
}

// listPlan is the plan's placements, one row per replica; named by
// TENANT/NAME of the workload.
func listPlan(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	res, err := c.Plan(ctx)
	if err != nil {
		return table{}, err
	}
	keep := func(w string) bool {
		if o.tenant != "" && !strings.HasPrefix(w, o.tenant+"/") {
			return false
		}
		return len(o.names) == 0 || slices.ContainsFunc(o.names, func(n string) bool { return matches(w, n) })
	}
	sub := &scheduler.Result{Placements: []scheduler.Placement{}, Unplaced: []scheduler.Unplaced{}, Problems: res.Problems}
	t := table{header: []string{"WORKLOAD", "REPLICA", "TIER", "NODE", "HOST", "REASON"}, data: sub}
	for _, p := range res.Placements {
		if keep(p.Workload) {
			sub.Placements = append(sub.Placements, p)
			t.rows = append(t.rows, tableRow{name: p.Workload, obj: p,
				cells: []string{p.Workload, fmt.Sprint(p.Replica), p.Tier, p.Node, p.Host, p.Reason}})
		}
	}
	for _, u := range res.Unplaced {
		if keep(u.Workload) {
			sub.Unplaced = append(sub.Unplaced, u)
			t.rows = append(t.rows, tableRow{name: u.Workload, obj: u,
				cells: []string{u.Workload, fmt.Sprint(u.Replica), "-", "NOT PLACED", "-", strings.Join(u.Reasons, "; ")}})
		}
	}
	t.text = func(w io.Writer) { printPlan(w, sub, nil) }
	return t, nil
}

// listEvents is the latest 100 events you may see (of --tenant's
// objects), each named by its object.
func listEvents(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	evs, err := lastEvents(ctx, c, 100, func(e wire.Event) bool { return o.tenant == "" || e.Tenant == o.tenant })
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "RESULT", "MESSAGE"}, wide: []string{"ACTOR TENANT"}}
	var kept []wire.Event
	for _, e := range evs {
		name := e.Name
		if e.Tenant != "" && e.Kind != v1.KindTenant {
			name = e.Tenant + "/" + e.Name
		}
		if len(o.names) > 0 && !slices.ContainsFunc(o.names, func(n string) bool { return matches(name, n) }) {
			continue
		}
		kept = append(kept, e)
		t.rows = append(t.rows, tableRow{name: cmp.Or(name, fmt.Sprint(e.Seq)), obj: e,
			cells: []string{fmt.Sprint(e.Seq), e.Time.Format("2006-01-02 15:04:05"), e.Actor, e.Action, cmp.Or(e.Object(), "-"), e.Result, e.Message},
			more:  []string{cmp.Or(e.ActorTenant, "-")}})
	}
	t.data = wire.Events{Events: kept}
	return t, nil
}

// listNodes is every node agent (operators only): state, last heartbeat,
// runtimes, replicas.
func listNodes(ctx context.Context, c *client.Client, o listOptions) (table, error) {
	ns, err := c.Nodes(ctx)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"NODE", "STATE", "LAST HEARTBEAT", "RUNTIMES", "REPLICAS"}, wide: []string{"AGENT", "CPU", "MEMORY", "IN TOPOLOGY"},
		footer: fmt.Sprintf("a node is down after %s without a heartbeat", ns.Timeout)}
	var kept []wire.NodeStatus
	for _, n := range ns.Nodes {
		if len(o.names) > 0 && !slices.Contains(o.names, n.Name) {
			continue
		}
		kept = append(kept, n)
		last := "never"
		if !n.LastHeartbeat.IsZero() {
			last = n.LastHeartbeat.UTC().Format(time.RFC3339)
		}
		t.rows = append(t.rows, tableRow{name: n.Name, obj: n,
			cells: []string{n.Name, n.State, last, runtimesCell(n), fmt.Sprint(len(n.Replicas))},
			more:  []string{cmp.Or(n.Agent, "-"), capacityCell(n.Capacity, "cpu"), capacityCell(n.Capacity, "memory"), fmt.Sprint(n.InTopology)}})
	}
	t.data = wire.Nodes{Nodes: kept, Timeout: ns.Timeout}
	return t, nil
}

// capacityCell is one figure of a node's capacity, or "-".
func capacityCell(c *wire.Capacity, what string) string {
	if c == nil {
		return "-"
	}
	if what == "cpu" {
		return cmp.Or(c.CPU, "-")
	}
	return cmp.Or(c.Memory, "-")
}

// completeNames completes `get`, `describe` and `delete`: a kind (stored
// kinds only for describe and delete), then the names of its objects as
// the server lists them (with --tenant), one name or many.
func completeNames(cf *clientFlags, tenant *string, stored, many bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			var out []cobra.Completion
			for _, n := range kindNames(stored) {
				if strings.HasPrefix(n, strings.ToLower(toComplete)) {
					out = append(out, n)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
		if !many && len(args) >= 2 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		k, err := lookupKind(args[0], stored)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		c, err := cf.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		o := listOptions{}
		if k.tenanted {
			o.tenant = *tenant
		}
		t, err := k.list(cmd.Context(), c, o)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, r := range t.rows {
			if strings.HasPrefix(r.name, toComplete) && !slices.Contains(out, r.name) && !slices.Contains(args[1:], r.name) {
				out = append(out, r.name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// printData writes v as indented JSON or as YAML.
func printData(w io.Writer, format string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == outYAML {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// placed summarizes a plan by workload.
type placed struct {
	nodes    []string
	tiers    map[string]int
	unplaced int
}

func byWorkload(res *scheduler.Result) map[string]*placed {
	m := map[string]*placed{}
	get := func(k string) *placed {
		if m[k] == nil {
			m[k] = &placed{tiers: map[string]int{}}
		}
		return m[k]
	}
	if res == nil {
		return m
	}
	for _, p := range res.Placements {
		w := get(p.Workload)
		w.tiers[p.Tier]++
		w.nodes = append(w.nodes, p.Node)
	}
	for _, u := range res.Unplaced {
		get(u.Workload).unplaced++
	}
	return m
}

func (p *placed) tierList() string {
	var parts []string
	for _, t := range v1.Tiers {
		if n := p.tiers[string(t)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", t, n))
		}
	}
	return cmp.Or(strings.Join(parts, ","), "-")
}

func qty(q *resource.Quantity) string {
	if q == nil {
		return "-"
	}
	return q.String()
}

// describeOut is `rung describe -o json|yaml`: the object, its revision,
// a workload's placements, and its recent events.
type describeOut struct {
	Object   json.RawMessage `json:"object"`
	Revision int64           `json:"revision"`
	Status   *workloadStatus `json:"status,omitempty"`
	// Replicas are a workload's replicas as GET .../replicas answers.
	Replicas []wire.Replica `json:"replicas,omitempty"`
	// Rollout is where a workload's move to its current version stands.
	Rollout *wire.Rollout `json:"rollout,omitempty"`
	Events  []wire.Event  `json:"events"`
}

func newDescribeCmd() *cobra.Command {
	var (
		cf             clientFlags
		tenant, output string
	)
	cmd := &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show an object, where its replicas are placed and its recent events",
		Long: `Shows one stored object (tenant, workload, topology or policy; a workload is
TENANT/NAME, or NAME with --tenant), a workload's placements from the
current plan and its replicas as their nodes report them, and the object's
latest events. -o json or yaml prints the same as one document: object,
revision, status (placements), replicas, events.`,
		Example:           `  rung describe workload biology/sequencer`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeNames(&cf, &tenant, true, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, []string{outText, outJSON, outYAML}); err != nil {
				return err
			}
			k, err := lookupKind(args[0], true)
			if err != nil {
				return err
			}
			if tenant != "" && k.apiKind != v1.KindWorkload && k.apiKind != v1.KindVolume {
				return withCode(ExitInvalid, fmt.Errorf("--tenant: only workloads and volumes are named within a tenant; leave it out"))
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			r, err := ref(cmd, c, k.apiKind, args[1], tenant)
			if err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			d := describeOut{Events: []wire.Event{}}
			if d.Revision, err = c.Get(ctx, r, &d.Object); err != nil {
				return apiError(err)
			}
			var res *scheduler.Result
			if k.apiKind == v1.KindWorkload {
				if res, err = c.Plan(ctx); err != nil {
					return apiError(err)
				}
				st := workloadStatus{Placements: []scheduler.Placement{}, Unplaced: []scheduler.Unplaced{}}
				for _, p := range res.Placements {
					if p.Workload == r.Tenant+"/"+r.Name {
						st.Placements = append(st.Placements, p)
					}
				}
				for _, u := range res.Unplaced {
					if u.Workload == r.Tenant+"/"+r.Name {
						st.Unplaced = append(st.Unplaced, u)
					}
				}
				d.Status = &st
				if d.Replicas, err = c.Replicas(ctx, r.Tenant, r.Name); err != nil {
					return apiError(err)
				}
				if ro, err := c.Rollout(ctx, r.Tenant, r.Name); err == nil {
					d.Rollout = &ro
				}
			}
			evs, err := objectEvents(ctx, c, r, 10)
			if err != nil {
				return apiError(err)
			}
			d.Events = append(d.Events, evs...)
			if output == outJSON || output == outYAML {
				return printData(out, output, d)
			}
			fmt.Fprintf(out, "%s (revision %d)\n\n", r, d.Revision)
			if err := printData(out, outYAML, d.Object); err != nil {
				return err
			}
			if res != nil {
				describePlacements(out, r.Tenant+"/"+r.Name, res)
				describeReplicas(out, d.Replicas)
				if ro := d.Rollout; ro != nil {
					describeRollout(out, ro)
				}
			}
			fmt.Fprintln(out, "\nEvents:")
			if len(evs) == 0 {
				fmt.Fprintln(out, "  none")
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for _, e := range evs {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Time.Format("2006-01-02 15:04:05"), e.Action, e.Result, e.Actor, e.Message)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant of the workload, when NAME does not name it")
	cmd.Flags().StringVarP(&output, "output", "o", outText, "output format: text, json or yaml")
	return cmd
}

func describePlacements(w io.Writer, key string, res *scheduler.Result) {
	fmt.Fprintln(w, "\nPlacements:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	n := 0
	for _, p := range res.Placements {
		if p.Workload == key {
			if n == 0 {
				fmt.Fprintln(tw, "  REPLICA\tTIER\tNODE\tHOST\tREASON")
			}
			n++
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", p.Replica, p.Tier, p.Node, p.Host, p.Reason)
		}
	}
	tw.Flush()
	if n == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, u := range res.Unplaced {
		if u.Workload == key {
			fmt.Fprintf(w, "  replica %d NOT PLACED:\n", u.Replica)
			for _, r := range u.Reasons {
				fmt.Fprintf(w, "    - %s\n", r)
			}
		}
	}
}

// objectEvents returns the last n visible events about r.
func objectEvents(ctx context.Context, c *client.Client, r client.Ref, n int) ([]wire.Event, error) {
	return lastEvents(ctx, c, n, func(e wire.Event) bool {
		return e.Kind == r.Kind && e.Name == r.Name && (r.Kind != v1.KindWorkload && r.Kind != v1.KindVolume || e.Tenant == r.Tenant)
	})
}

// lastEvents returns the last n visible events that keep accepts, among
// the latest 1000.
func lastEvents(ctx context.Context, c *client.Client, n int, keep func(wire.Event) bool) ([]wire.Event, error) {
	page, err := c.TailEvents(ctx, 1000)
	if err != nil {
		return nil, err
	}
	var out []wire.Event
	for _, e := range page.Events {
		if keep(e) {
			out = append(out, e)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// watchObjects is `rung get KIND -w` for stored kinds: each object, then
// each change, as EVENT NAME lines (or the API's JSON/YAML events).
func watchObjects(cmd *cobra.Command, c *client.Client, kind, tenant, output string) error {
	out := cmd.OutOrStdout()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := true
	err := c.Watch(cmd.Context(), kind, tenant, func(ev wire.WatchEvent) error {
		if output == "json" || output == "yaml" {
			return printData(out, output, ev)
		}
		var obj struct {
			Metadata v1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(ev.Object, &obj); err != nil {
			return err
		}
		name := obj.Metadata.Name
		if obj.Metadata.Tenant != "" {
			name = obj.Metadata.Tenant + "/" + name
		}
		if output == "name" {
			fmt.Fprintf(out, "%s/%s\n", strings.ToLower(kind), name)
			return nil
		}
		if header {
			fmt.Fprintln(tw, "EVENT\tKIND\tNAME")
			header = false
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ev.Type, kind, name)
		return tw.Flush()
	})
	return apiError(err)
}

// watchEvents is `rung get events -w`: the events from now on, one line
// each (or the API's JSON/YAML), of --tenant's objects when given.
func watchEvents(cmd *cobra.Command, c *client.Client, tenant, output string) error {
	out := cmd.OutOrStdout()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := output != "json" && output != "yaml"
	if header {
		fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tOBJECT\tRESULT\tMESSAGE")
		tw.Flush()
	}
	err := c.WatchEvents(cmd.Context(), 0, func(e wire.Event) error {
		if tenant != "" && e.Tenant != tenant {
			return nil
		}
		if !header {
			return printData(out, output, e)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format("2006-01-02 15:04:05"), e.Actor, e.Action,
			cmp.Or(e.Object(), "-"), e.Result, oneLine(e.Message, 120))
		return tw.Flush()
	})
	return apiError(err)
}

// watchNodes is `rung get nodes -w`: every node, then each change.
func watchNodes(cmd *cobra.Command, c *client.Client, output string) error {
	out := cmd.OutOrStdout()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := output != "json" && output != "yaml"
	if header {
		fmt.Fprintln(tw, "EVENT\tNODE\tSTATE\tLAST HEARTBEAT\tRUNTIMES\tREPLICAS")
		tw.Flush()
	}
	err := c.WatchNodes(cmd.Context(), func(ev wire.WatchEvent, n wire.NodeStatus) error {
		if !header {
			return printData(out, output, ev)
		}
		last := "never"
		if !n.LastHeartbeat.IsZero() {
			last = n.LastHeartbeat.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", ev.Type, n.Name, n.State, last, cmp.Or(strings.Join(n.Runtimes, ","), "-"), len(n.Replicas))
		return tw.Flush()
	})
	return apiError(err)
}

// runtimesCell lists a node's runtimes, marking the emulated ones
// ("vm(EMULATED)"): they are for tests, not a security boundary.
func runtimesCell(n wire.NodeStatus) string {
	var out []string
	for _, r := range n.Runtimes {
		if slices.Contains(n.Emulated, r) {
			r += "(EMULATED)"
		}
		out = append(out, r)
	}
	return cmp.Or(strings.Join(out, ","), "-")
}
