package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
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
		cf     clientFlags
		files  []string
		output string
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
server refused an object, 2 on invalid manifests. -o name prints KIND/NAME
of each object applied, -o json or yaml each result.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, changeOutputs); err != nil {
				return err
			}
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
			stderr := cmd.ErrOrStderr()
			results, _ := c.ApplySet(cmd.Context(), set)
			failed, invalid := 0, true
			var changes []change
			for _, r := range results {
				ch := change{Kind: r.Ref.Kind, Tenant: r.Ref.Tenant, Name: r.Ref.Name}
				if r.Err != nil {
					failed++
					invalid = invalid && errors.Is(r.Err, client.ErrInvalid)
					fmt.Fprintf(stderr, "%s%s %s: %v\n", origin(set, r.Ref), strings.ToLower(r.Ref.Kind), displayRef(r.Ref), r.Err)
					ch.Error = r.Err.Error()
				} else {
					ch.Result = r.Result.Result
				}
				changes = append(changes, ch)
			}
			if err := printChanges(cmd.OutOrStdout(), output, changes); err != nil {
				return err
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
	cmd.Flags().StringVarP(&output, "output", "o", outText, "output format: "+strings.Join(changeOutputs, ", "))
	return cmd
}

// change is one object that apply or delete acted on, as -o json|yaml
// prints it.
type change struct {
	Kind   string `json:"kind"`
	Tenant string `json:"tenant,omitempty"`
	Name   string `json:"name"`
	// Result is created, updated, unchanged or deleted; Error why not.
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

var changeOutputs = []string{outText, outJSON, outYAML, outName}

// printChanges prints what apply or delete did: a line each (the errors
// went to stderr), KIND/NAME of each object acted on, or all as a list.
func printChanges(w io.Writer, output string, changes []change) error {
	switch output {
	case outJSON, outYAML:
		return printData(w, output, map[string]any{"items": changes})
	}
	for _, c := range changes {
		if c.Error != "" {
			continue
		}
		ref := displayRef(client.Ref{Kind: c.Kind, Tenant: c.Tenant, Name: c.Name})
		if output == outName {
			fmt.Fprintf(w, "%s/%s\n", strings.ToLower(c.Kind), ref)
			continue
		}
		fmt.Fprintf(w, "%s %s %s\n", strings.ToLower(c.Kind), ref, c.Result)
	}
	return nil
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

// ref resolves NAME of kind; a workload is TENANT/NAME, or NAME when
// --tenant is given or only one visible tenant has a workload so named.
func ref(cmd *cobra.Command, c *client.Client, kind, name, tenant string) (client.Ref, error) {
	r := client.Ref{Kind: kind, Name: name}
	if kind != v1.KindWorkload && kind != v1.KindVolume {
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
	found, err := tenantsNaming(cmd.Context(), c, kind, name)
	if err != nil {
		return r, apiError(err)
	}
	what := strings.ToLower(kind)
	switch len(found) {
	case 1:
		r.Tenant = found[0]
		return r, nil
	case 0:
		return r, fmt.Errorf("%s %q not found", what, name)
	}
	return r, withCode(ExitInvalid, fmt.Errorf("%s %q: several tenants have one (%s); name it TENANT/NAME", what, name, strings.Join(found, ", ")))
}

func newDeleteCmd() *cobra.Command {
	var (
		cf             clientFlags
		files          []string
		tenant, output string
	)
	cmd := &cobra.Command{
		Use:   "delete (KIND NAME... | -f PATH...)",
		Short: "Delete objects by name, or every object of some manifests",
		Long: `Deletes the named objects of one kind (tenants, workloads, topologies or
policies; a workload is TENANT/NAME, or NAME with --tenant), or with -f every
object in the manifests, workloads first and tenants last. Exit 1 when one
could not be deleted (the others still are), 2 on a usage error.`,
		Example: `  rung delete workload biology/sequencer biology/notebook
  rung delete -f examples/university/workloads.yaml -o name`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: completeNames(&cf, &tenant, true, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, changeOutputs); err != nil {
				return err
			}
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
			case len(files) == 0 && len(args) >= 2:
				kind, err := kindOf(args[0])
				if err != nil {
					return err
				}
				for _, name := range args[1:] {
					r, err := ref(cmd, c, kind, name, tenant)
					if err != nil {
						return err
					}
					refs = append(refs, r)
				}
			default:
				return withCode(ExitInvalid, errors.New("name what to delete: KIND NAME..., or -f PATH; see rung delete --help"))
			}
			failed := 0
			var changes []change
			for _, r := range refs {
				ch := change{Kind: r.Kind, Tenant: r.Tenant, Name: r.Name, Result: "deleted"}
				if _, err := c.Delete(cmd.Context(), r); err != nil {
					failed++
					where := ""
					if set != nil {
						where = origin(set, r)
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "%s%s %s: %v\n", where, strings.ToLower(r.Kind), displayRef(r), err)
					ch.Result, ch.Error = "", err.Error()
				}
				changes = append(changes, ch)
			}
			if err := printChanges(cmd.OutOrStdout(), output, changes); err != nil {
				return err
			}
			if failed > 0 {
				return withCode(ExitFailure, fmt.Errorf("%d of %d object(s) not deleted", failed, len(refs)))
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "manifest file or directory (repeatable)")
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant of the workloads, when NAME does not name it")
	cmd.Flags().StringVarP(&output, "output", "o", outText, "output format: "+strings.Join(changeOutputs, ", "))
	return cmd
}

// tenantsNaming lists the tenants that have an object of kind (a
// tenanted kind) called name, among those the caller sees.
func tenantsNaming(ctx context.Context, c *client.Client, kind, name string) ([]string, error) {
	l, err := c.List(ctx, kind, "")
	if err != nil {
		return nil, err
	}
	objs, err := decodeItems[struct {
		Metadata v1.ObjectMeta `json:"metadata"`
	}](l)
	if err != nil {
		return nil, err
	}
	var found []string
	for _, o := range objs {
		if o.Metadata.Name == name {
			found = append(found, o.Metadata.Tenant)
		}
	}
	return found, nil
}
