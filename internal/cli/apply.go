package cli

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
	"rung.dev/rung/internal/sign"
)

// apiError gives an API error its exit code: invalid input exits 2.
func apiError(err error) error {
	if errors.Is(err, client.ErrInvalid) {
		return withCode(ExitInvalid, err)
	}
	return err
}

// readManifests decodes the files and directories in paths, strictly but
// without cross-object checks: the objects they refer to may already be
// on the server, which checks the rest. Directories are read recursively,
// taking .yaml, .yml and .json files, skipping hidden entries and testdata.
func readManifests(paths []string) (*v1.Set, error) {
	if len(paths) == 0 {
		return nil, withCode(ExitInvalid, errors.New("no manifests: pass -f FILE or -f DIR"))
	}
	set := &v1.Set{Origins: map[string]v1.Origin{}}
	var errs []error
	for _, root := range paths {
		files, err := manifestFiles(root)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			data, err := readFile(f, v1.MaxFileSize)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s, err := v1.Decode(f, data)
			set.Merge(s)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, withCode(ExitInvalid, errors.Join(errs...))
	}
	return set, nil
}

// inlineSigningKeys replaces each Tenant's spec.images.signedBy key file
// (a path relative to the manifest's directory, DESIGN §4) with the key's
// PEM text, so the control plane and the nodes, which can't read the
// client's files, verify signatures with the keys themselves. An entry
// that already is PEM stays; every key must parse as a public key.
func inlineSigningKeys(set *v1.Set) error {
	var errs []error
	for i := range set.Tenants {
		t := &set.Tenants[i]
		o := set.Origins[v1.KindTenant+"/"+t.Metadata.Name]
		keys := slices.Clone(t.Spec.Images.SignedBy)
		for j, k := range keys {
			where := fmt.Sprintf("tenant %s: spec.images.signedBy[%d]", t.Metadata.Name, j)
			if o.File != "" {
				where = o.File + ": " + where
			}
			if strings.Contains(k, "-----BEGIN") {
				if _, err := sign.ParsePublicKey(where, []byte(k)); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			p := k
			if !filepath.IsAbs(p) && o.File != "" {
				p = filepath.Join(filepath.Dir(o.File), p)
			}
			data, err := readFile(p, 64<<10)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			if _, err := sign.ParsePublicKey(where+" ("+p+")", data); err != nil {
				errs = append(errs, err)
				continue
			}
			keys[j] = string(data)
		}
		t.Spec.Images.SignedBy = keys
	}
	if len(errs) > 0 {
		return withCode(ExitInvalid, errors.Join(errs...))
	}
	return nil
}

func manifestFiles(root string) ([]string, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	if !info.IsDir() {
		return []string{root}, nil
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root && (strings.HasPrefix(e.Name(), ".") || e.IsDir() && e.Name() == "testdata") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read manifests %s: %w", root, err)
	}
	return files, nil
}

func readFile(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: larger than %d bytes", name, limit)
	}
	return data, nil
}

// origin is where an object was read, "FILE:LINE", for messages.
func origin(set *v1.Set, ref client.Ref) string {
	key := ref.Kind + "/" + ref.Name
	if ref.Tenant != "" {
		key = ref.Kind + "/" + ref.Tenant + "/" + ref.Name
	}
	o, ok := set.Origins[key]
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s:%d: ", o.File, o.Line)
}

func newApplyCmd() *cobra.Command {
	var (
		cf    clientFlags
		files []string
	)
	cmd := &cobra.Command{
		Use:   "apply -f PATH...",
		Short: "Create or update objects on the control plane from manifests",
		Long: `Reads Tenant, Topology, Policy and Workload manifests (files or directories,
YAML with several documents or JSON) and applies each object: created,
updated, or unchanged when it is already so. Tenants, topologies and
policies go first, then workloads. Exit 0 when every object applied and
every replica of the applied workloads is placed, 3 when some replica can't
be placed (with the planner's reasons, as rung plan prints them), 1 when the
server refused an object, 2 on invalid manifests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := readManifests(files)
			if err != nil {
				return err
			}
			if err := inlineSigningKeys(set); err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			results, _ := c.ApplySet(cmd.Context(), set)
			failed, invalid := 0, true
			for _, r := range results {
				name := strings.ToLower(r.Ref.Kind) + " " + displayRef(r.Ref)
				if r.Err != nil {
					failed++
					invalid = invalid && errors.Is(r.Err, client.ErrInvalid)
					fmt.Fprintf(stderr, "%s%s: %v\n", origin(set, r.Ref), name, r.Err)
					continue
				}
				fmt.Fprintf(out, "%s %s\n", name, r.Result.Result)
			}
			if failed > 0 {
				code := ExitFailure
				if invalid {
					code = ExitInvalid
				}
				return withCode(code, fmt.Errorf("%d of %d object(s) not applied", failed, len(results)))
			}
			return unplacedOf(cmd, c, set)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "manifest file or directory (repeatable)")
	return cmd
}

// unplacedOf asks the control plane's plan about the workloads of set:
// ExitUnplaced, with the reasons, when a replica of one could not be
// placed (DESIGN §8: `apply` exits 3 like `plan`).
func unplacedOf(cmd *cobra.Command, c *client.Client, set *v1.Set) error {
	if len(set.Workloads) == 0 {
		return nil
	}
	res, err := c.Plan(cmd.Context())
	if err != nil {
		return apiError(err)
	}
	applied := map[string]bool{}
	for _, w := range set.Workloads {
		applied[w.Metadata.Tenant+"/"+w.Metadata.Name] = true
	}
	n := 0
	stderr := cmd.ErrOrStderr()
	for _, u := range res.Unplaced {
		if !applied[u.Workload] {
			continue
		}
		if n == 0 {
			fmt.Fprintln(stderr, "UNPLACED")
		}
		n++
		fmt.Fprintf(stderr, "  %s[%d]:\n", u.Workload, u.Replica)
		for _, r := range u.Reasons {
			fmt.Fprintf(stderr, "    - %s\n", r)
		}
	}
	if n > 0 {
		return withCode(ExitUnplaced, fmt.Errorf("%d replica(s) of the applied workloads can't be placed; `rung explain WORKLOAD` says why and what would fix it", n))
	}
	return nil
}

func displayRef(r client.Ref) string {
	if r.Tenant != "" {
		return r.Tenant + "/" + r.Name
	}
	return r.Name
}

// kindOf reads a kind as users type it: workload, workloads, wl, ...
func kindOf(s string) (string, error) {
	switch strings.ToLower(s) {
	case "tenant", "tenants":
		return v1.KindTenant, nil
	case "workload", "workloads", "wl":
		return v1.KindWorkload, nil
	case "topology", "topologies", "topo":
		return v1.KindTopology, nil
	case "policy", "policies":
		return v1.KindPolicy, nil
	}
	return "", withCode(ExitInvalid, fmt.Errorf("unknown kind %q: use tenants, workloads, topologies or policies", s))
}

// ref resolves NAME of kind; a workload is TENANT/NAME, or NAME when
// --tenant is given or only one visible tenant has a workload so named.
func ref(cmd *cobra.Command, c *client.Client, kind, name, tenant string) (client.Ref, error) {
	r := client.Ref{Kind: kind, Name: name}
	if kind != v1.KindWorkload {
		return r, nil
	}
	if t, n, ok := strings.Cut(name, "/"); ok {
		r.Tenant, r.Name = t, n
		return r, nil
	}
	if tenant != "" {
		r.Tenant = tenant
		return r, nil
	}
	wls, err := c.ListWorkloads(cmd.Context(), "")
	if err != nil {
		return r, apiError(err)
	}
	var found []string
	for _, w := range wls {
		if w.Metadata.Name == name {
			found = append(found, w.Metadata.Tenant)
		}
	}
	switch len(found) {
	case 1:
		r.Tenant = found[0]
		return r, nil
	case 0:
		return r, fmt.Errorf("workload %q not found", name)
	}
	return r, withCode(ExitInvalid, fmt.Errorf("workload %q: several tenants have one (%s); name it TENANT/NAME", name, strings.Join(found, ", ")))
}

func newDeleteCmd() *cobra.Command {
	var (
		cf     clientFlags
		files  []string
		tenant string
	)
	cmd := &cobra.Command{
		Use:   "delete (KIND NAME | -f PATH...)",
		Short: "Delete an object, or every object of some manifests",
		Long: `Deletes one object (a workload is TENANT/NAME), or with -f every object in
the manifests, workloads first and tenants last.`,
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var refs []client.Ref
			var set *v1.Set
			switch {
			case len(files) > 0 && len(args) == 0:
				if set, err = readManifests(files); err != nil {
					return err
				}
				objs := client.Objects(set)
				for _, o := range slices.Backward(objs) {
					r, _ := client.RefOf(o)
					refs = append(refs, r)
				}
			case len(files) == 0 && len(args) == 2:
				kind, err := kindOf(args[0])
				if err != nil {
					return err
				}
				r, err := ref(cmd, c, kind, args[1], tenant)
				if err != nil {
					return err
				}
				refs = append(refs, r)
			default:
				return withCode(ExitInvalid, errors.New("name what to delete: KIND NAME, or -f PATH"))
			}
			failed := 0
			for _, r := range refs {
				name := strings.ToLower(r.Kind) + " " + displayRef(r)
				if _, err := c.Delete(cmd.Context(), r); err != nil {
					failed++
					where := ""
					if set != nil {
						where = origin(set, r)
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "%s%s: %v\n", where, name, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", name)
			}
			if failed > 0 {
				return withCode(ExitFailure, fmt.Errorf("%d of %d object(s) not deleted", failed, len(refs)))
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "manifest file or directory (repeatable)")
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant of the workload")
	return cmd
}

func newGetCmd() *cobra.Command {
	var (
		cf             clientFlags
		output, tenant string
		watch          bool
		limit          int
		cont           string
	)
	cmd := &cobra.Command{
		Use:   "get KIND [NAME] [-o json|yaml]",
		Short: "List objects of a kind, or show one; `get plan` shows the placements",
		Long: `Lists tenants, workloads, topologies or policies you may see, or shows one
object. Workloads are listed with their placements from the current plan.
"rung get plan" prints the scheduler's current plan, like rung plan;
"rung get events" the latest changes and denials you may see;
"rung get nodes" (operators) every node agent: up, down or unknown;
"rung get replicas [WORKLOAD[/INDEX]]" each replica's state, restarts and
last error (-o wide adds health, exit code and usage; -w watches).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if isReplicaKind(args[0]) { // replicas.go
				c, err := cf.client()
				if err != nil {
					return err
				}
				return getReplicas(cmd, c, args[1:], tenant, output, watch)
			}
			if watch {
				return withCode(ExitInvalid, fmt.Errorf("-w: only replicas can be watched so far"))
			}
			if !slices.Contains([]string{"", "text", "json", "yaml"}, output) {
				return withCode(ExitInvalid, fmt.Errorf("-o %q: use text, json or yaml", output))
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if strings.ToLower(args[0]) == "events" {
				return printEvents(cmd, c, output)
			}
			if k := strings.ToLower(args[0]); k == "nodes" || k == "node" {
				ns, err := c.Nodes(ctx)
				if err != nil {
					return apiError(err)
				}
				if output == "json" || output == "yaml" {
					return printData(out, output, ns)
				}
				printNodes(out, ns)
				return nil
			}
			if strings.ToLower(args[0]) == "plan" {
				res, err := c.Plan(ctx)
				if err != nil {
					return apiError(err)
				}
				if output == "json" || output == "yaml" {
					return printData(out, output, res)
				}
				printPlan(out, res, nil)
				return nil
			}
			kind, err := kindOf(args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				r, err := ref(cmd, c, kind, args[1], tenant)
				if err != nil {
					return err
				}
				var raw json.RawMessage
				if _, err := c.Get(ctx, r, &raw); err != nil {
					return apiError(err)
				}
				if output == "json" {
					return printData(out, output, raw)
				}
				return printData(out, "yaml", raw)
			}
			l, err := listOrPage(cmd, c, kind, tenant, limit, cont) // token.go
			if err != nil {
				return apiError(err)
			}
			if output == "json" || output == "yaml" {
				items := make([]json.RawMessage, len(l.Items))
				for i, it := range l.Items {
					items[i] = it.Object
				}
				return printData(out, output, map[string]any{"items": items, "continue": l.Continue})
			}
			var res *scheduler.Result
			if kind == v1.KindWorkload {
				if res, err = c.Plan(ctx); err != nil {
					return apiError(err)
				}
			}
			return printList(out, kind, l, res)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or yaml (replicas also wide and name)")
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's workloads")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after listing, print changes as they happen (replicas)")
	cmd.Flags().IntVar(&limit, "limit", 0, "list one page of at most this many objects (see --continue)")
	cmd.Flags().StringVar(&cont, "continue", "", "the next page of a list, as the previous page printed")
	return cmd
}

// printData writes v as indented JSON or as YAML.
func printData(w io.Writer, format string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
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

func printList(w io.Writer, kind string, l wire.List, res *scheduler.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	if len(l.Items) == 0 {
		fmt.Fprintf(w, "no %s\n", strings.ToLower(kind)+"s")
		return nil
	}
	plan := byWorkload(res)
	switch kind {
	case v1.KindWorkload:
		fmt.Fprintln(tw, "TENANT\tNAME\tREPLICAS\tPLACED\tTIERS\tNODES")
	case v1.KindTenant:
		fmt.Fprintln(tw, "NAME\tORGANIZATION\tTRUST\tQUOTA CPU\tQUOTA MEMORY\tQUOTA REPLICAS")
	case v1.KindTopology:
		fmt.Fprintln(tw, "NAME\tNODES\tEXTRA LEVELS")
	case v1.KindPolicy:
		fmt.Fprintln(tw, "NAME\tRULES\tTIER OVERHEADS")
	}
	for _, it := range l.Items {
		switch kind {
		case v1.KindWorkload:
			var o v1.Workload
			if err := json.Unmarshal(it.Object, &o); err != nil {
				return err
			}
			n := v1.DefaultReplicas
			if o.Spec.Replicas != nil {
				n = *o.Spec.Replicas
			}
			p := plan[o.Metadata.Tenant+"/"+o.Metadata.Name]
			if p == nil {
				p = &placed{tiers: map[string]int{}}
			}
			nodes := slices.Compact(slices.Sorted(slices.Values(p.nodes)))
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d/%d\t%s\t%s\n", o.Metadata.Tenant, o.Metadata.Name, n, len(p.nodes), n,
				p.tierList(), cmp.Or(strings.Join(nodes, ","), "-"))
		case v1.KindTenant:
			var o v1.Tenant
			if err := json.Unmarshal(it.Object, &o); err != nil {
				return err
			}
			q := o.Spec.Quota
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Metadata.Name, o.Spec.Organization, o.Spec.Trust,
				qty(q.CPU), qty(q.Memory), cmp.Or(fmt.Sprint(q.Replicas), "-"))
		case v1.KindTopology:
			var o v1.Topology
			if err := json.Unmarshal(it.Object, &o); err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\n", o.Metadata.Name, len(o.Spec.Nodes), cmp.Or(strings.Join(o.Spec.Levels, ","), "-"))
		case v1.KindPolicy:
			var o v1.Policy
			if err := json.Unmarshal(it.Object, &o); err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\n", o.Metadata.Name, len(o.Spec.Rules), len(o.Spec.TierOverhead))
		}
	}
	return nil
}

func qty(q *resource.Quantity) string {
	if q == nil {
		return "-"
	}
	return q.String()
}

func newDescribeCmd() *cobra.Command {
	var (
		cf     clientFlags
		tenant string
	)
	cmd := &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show an object, where its replicas are placed and its recent events",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			kind, err := kindOf(args[0])
			if err != nil {
				return err
			}
			r, err := ref(cmd, c, kind, args[1], tenant)
			if err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			var raw json.RawMessage
			rev, err := c.Get(ctx, r, &raw)
			if err != nil {
				return apiError(err)
			}
			fmt.Fprintf(out, "%s (revision %d)\n\n", r, rev)
			if err := printData(out, "yaml", raw); err != nil {
				return err
			}
			if kind == v1.KindWorkload {
				res, err := c.Plan(ctx)
				if err != nil {
					return apiError(err)
				}
				describePlacements(out, r.Tenant+"/"+r.Name, res)
				rs, err := c.Replicas(ctx, r.Tenant, r.Name)
				if err != nil {
					return apiError(err)
				}
				describeReplicas(out, rs)
			}
			evs, err := objectEvents(cmd, c, r, 10)
			if err != nil {
				return apiError(err)
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
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant of the workload")
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

// printEvents prints the last 100 visible events.
func printEvents(cmd *cobra.Command, c *client.Client, output string) error {
	evs, err := lastEvents(cmd, c, 100, func(wire.Event) bool { return true })
	if err != nil {
		return apiError(err)
	}
	out := cmd.OutOrStdout()
	if output == "json" || output == "yaml" {
		return printData(out, output, wire.Events{Events: evs})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tOBJECT\tRESULT\tMESSAGE")
	for _, e := range evs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format("2006-01-02 15:04:05"), e.Actor, e.Action,
			cmp.Or(e.Object(), "-"), e.Result, e.Message)
	}
	return tw.Flush()
}

// objectEvents returns the last n visible events about r.
func objectEvents(cmd *cobra.Command, c *client.Client, r client.Ref, n int) ([]wire.Event, error) {
	return lastEvents(cmd, c, n, func(e wire.Event) bool {
		return e.Kind == r.Kind && e.Name == r.Name && (r.Kind != v1.KindWorkload || e.Tenant == r.Tenant)
	})
}

// lastEvents returns the last n visible events that keep accepts, among
// the latest 1000.
func lastEvents(cmd *cobra.Command, c *client.Client, n int, keep func(wire.Event) bool) ([]wire.Event, error) {
	page, err := c.TailEvents(cmd.Context(), 1000)
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

// printNodes lists node agents: state, last heartbeat, runtimes, replicas.
func printNodes(w io.Writer, ns wire.Nodes) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tLAST HEARTBEAT\tRUNTIMES\tREPLICAS")
	for _, n := range ns.Nodes {
		last := "never"
		if !n.LastHeartbeat.IsZero() {
			last = n.LastHeartbeat.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", n.Name, n.State, last, strings.Join(n.Runtimes, ","), len(n.Replicas))
	}
	tw.Flush()
	fmt.Fprintf(w, "a node is down after %s without a heartbeat\n", ns.Timeout)
}
