package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/scan"
	"rung.dev/rung/internal/sign"
	"rung.dev/rung/internal/vulndb"
)

// ExitRejected is the exit code of `rung check` when admission rejects.
const ExitRejected = 4

// Output formats of `rung check`.
const (
	outTable = "table"
	outJSON  = "json"
	outSARIF = "sarif"
)

// checkFlags are shared by the check subcommands.
type checkFlags struct {
	files    []string
	tenant   string
	rules    string
	maxAge   time.Duration
	output   string
	dataDir  string
	vulnDB   string
	keys     []string
	block    string
	insecure bool
	set      *v1.Set // the manifests of -f, once read
}

func (f *checkFlags) register(cmd *cobra.Command, image bool) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.files, "file", "f", nil, "manifest file or directory with the Tenant (and Workloads), and Policies whose spec.admission rules apply (repeatable)")
	fl.StringVar(&f.tenant, "tenant", "", "judge as this tenant of the manifests: its registries and signing keys apply")
	fl.StringVar(&f.rules, "rules", "", "operator admission rules: a YAML or JSON `FILE` of rules: [{id, title, severity, fix, on, deny}]")
	fl.StringVarP(&f.output, "output", "o", outTable, "output format: table, json or sarif")
	if !image {
		return
	}
	fl.DurationVar(&f.maxAge, "max-age", policy.DefaultMaxImageAge, "oldest image admitted (RUNG-image-age); a Policy's spec.admission.maxImageAge, if smaller, wins")
	fl.StringVar(&f.dataDir, "data-dir", defaultImageDataDir, "data directory; images live in DIR/images, the vulnerability database in DIR/vulndb.db")
	fl.StringVar(&f.vulnDB, "vulndb", "", "vulnerability database (default DATA-DIR/vulndb.db; without one, CIS-4.4 is skipped)")
	fl.StringArrayVar(&f.keys, "key", nil, "trusted cosign public key (PEM), in addition to the tenant's signedBy (repeatable)")
	fl.StringVar(&f.block, "block-severity", "", "vulnerability severity that rejects: unknown, low, medium, high or critical (default: the tenant's spec.images.blockSeverity, else "+policy.DefaultBlockSeverity.String()+")")
	fl.BoolVar(&f.insecure, "insecure", false, "allow plain HTTP to a registry that is not on loopback")
}

// newCheckCmd is `rung check`: the admission report of DESIGN §6.
func newCheckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Admission checks: the report for an image or for workloads, before anything runs",
		Long: "Admission checks (DESIGN §6): CIS Docker Benchmark v1.6 sections 4-5, the Kubernetes Pod Security\n" +
			"Standards restricted profile, registry allow-list, cosign signatures, OS packages matched against\n" +
			"the offline OSV database, and the operator's CEL rules. Exit 0 when admitted, " + fmt.Sprint(ExitRejected) + " when\n" +
			"rejected, 2 on invalid input.",
	}
	cmd.AddCommand(newCheckImageCmd(), newCheckWorkloadCmd(), newCheckListCmd())
	return cmd
}

func newCheckImageCmd() *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "image REF",
		Short: "Check an image: config, files, signature, packages and known vulnerabilities",
		Long: "Check an image from the store, an oci-layout:DIR[:TAG], a docker-archive:FILE, or a registry\n" +
			"(read in place, nothing is stored). A tag is resolved once; the report names the digest checked.\n" +
			"Layers are read as tar streams and never extracted.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validOutput(); err != nil {
				return err
			}
			d, err := f.checkImage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), []policy.Decision{d})
		},
	}
	f.register(cmd, true)
	return cmd
}

func newCheckWorkloadCmd() *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "workload [NAME…] -f PATH…",
		Short: "Check workloads as `rung apply` would: capabilities, privilege and the operator's rules",
		Long: "Check the workloads of the manifests (all, or those named TENANT/NAME or NAME). The checks of the\n" +
			"runtime spec (namespaces, seccomp, limits, mounts…) run on the node before a replica starts and are\n" +
			"listed as skipped here.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validOutput(); err != nil {
				return err
			}
			if f.output == outSARIF {
				return withCode(ExitInvalid, errors.New("check workload: -o sarif is for images; use table or json"))
			}
			set, err := f.manifests()
			if err != nil {
				return err
			}
			eng, err := f.engine()
			if err != nil {
				return err
			}
			var ds []policy.Decision
			for _, w := range set.Workloads {
				if len(args) > 0 && !slices.Contains(args, w.Metadata.Name) && !slices.Contains(args, w.Metadata.Tenant+"/"+w.Metadata.Name) {
					continue
				}
				var t v1.Tenant
				if i := slices.IndexFunc(set.Tenants, func(t v1.Tenant) bool { return t.Metadata.Name == w.Metadata.Tenant }); i >= 0 {
					t = set.Tenants[i]
				}
				ds = append(ds, eng.Workload(policy.WorkloadInput{Tenant: t, Workload: w, Now: time.Now().UTC()}))
			}
			if len(ds) == 0 {
				return withCode(ExitInvalid, errors.New("check workload: no matching workloads in the manifests"))
			}
			return f.print(cmd.OutOrStdout(), ds)
		},
	}
	f.register(cmd, false)
	return cmd
}

func newCheckListCmd() *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every admission check: built-in ones and the operator's rules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eng, err := f.engine()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.output == outJSON {
				return writeJSON(out, eng.Checks())
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tTITLE\tALSO")
			for _, c := range eng.Checks() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Severity, c.Title, strings.Join(c.Refs, ", "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&f.rules, "rules", "", "operator admission rules file")
	cmd.Flags().StringArrayVarP(&f.files, "file", "f", nil, "manifest file or directory whose Policies' spec.admission rules are listed too (repeatable)")
	cmd.Flags().StringVarP(&f.output, "output", "o", outTable, "output format: table or json")
	return cmd
}

func (f *checkFlags) validOutput() error {
	if !slices.Contains([]string{outTable, outJSON, outSARIF}, f.output) {
		return withCode(ExitInvalid, fmt.Errorf("-o %q: use table, json or sarif", f.output))
	}
	return nil
}

// rulesFile is the format of --rules.
type rulesFile struct {
	Rules []policy.Rule `json:"rules"`
}

// engine builds the admission engine: the built-in checks, the admission
// rules of the Policies among the -f manifests, and those of --rules.
func (f *checkFlags) engine() (*policy.Engine, error) {
	cfg := policy.Config{MaxImageAge: f.maxAge}
	if len(f.files) > 0 {
		set, err := f.manifests()
		if err != nil {
			return nil, err
		}
		pc, err := policy.FromPolicies(set.Policies)
		if err != nil {
			return nil, withCode(ExitInvalid, err)
		}
		cfg = pc.Merge(cfg)
	}
	if f.rules != "" {
		data, err := os.ReadFile(f.rules)
		if err != nil {
			return nil, withCode(ExitInvalid, err)
		}
		var rf rulesFile
		if err := yaml.UnmarshalStrict(data, &rf); err != nil {
			return nil, withCode(ExitInvalid, fmt.Errorf("--rules %s: %w", f.rules, err))
		}
		cfg.Rules = append(cfg.Rules, rf.Rules...)
	}
	eng, err := policy.New(cfg)
	if err != nil {
		return nil, withCode(ExitInvalid, err)
	}
	return eng, nil
}

func (f *checkFlags) manifests() (*v1.Set, error) {
	if len(f.files) == 0 {
		return nil, withCode(ExitInvalid, errors.New("no manifests: pass -f FILE or -f DIR"))
	}
	if f.set != nil {
		return f.set, nil
	}
	set, err := v1.Load(f.files...)
	if err != nil {
		return nil, withCode(ExitInvalid, err)
	}
	set.ApplyDefaults()
	f.set = set
	return set, nil
}

// tenantPolicy returns the tenant named by --tenant and its signing keys
// (signedBy paths are relative to the manifest that names them).
func (f *checkFlags) tenantPolicy() (v1.Tenant, []sign.Key, error) {
	var t v1.Tenant
	var paths []string
	if f.tenant != "" {
		set, err := f.manifests()
		if err != nil {
			return t, nil, err
		}
		i := slices.IndexFunc(set.Tenants, func(t v1.Tenant) bool { return t.Metadata.Name == f.tenant })
		if i < 0 {
			return t, nil, withCode(ExitInvalid, fmt.Errorf("--tenant %s: no such Tenant in the manifests", f.tenant))
		}
		t = set.Tenants[i]
		dir := filepath.Dir(set.Origins[v1.KindTenant+"/"+f.tenant].File)
		for _, p := range t.Spec.Images.SignedBy {
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			paths = append(paths, p)
		}
	} else if len(f.files) > 0 {
		// -f with only Policies (their admission rules) needs no tenant.
		set, err := f.manifests()
		if err != nil {
			return t, nil, err
		}
		if len(set.Tenants) > 0 {
			return t, nil, withCode(ExitInvalid, errors.New("-f needs --tenant NAME: which tenant's policy applies"))
		}
	}
	paths = append(paths, f.keys...)
	var keys []sign.Key
	for _, p := range paths {
		k, err := sign.LoadPublicKey(p)
		if err != nil {
			return t, nil, withCode(ExitInvalid, err)
		}
		keys = append(keys, k)
	}
	if len(f.keys) > 0 && len(t.Spec.Images.SignedBy) == 0 {
		// --key alone asks for a signature as a tenant's signedBy would.
		t.Spec.Images.SignedBy = f.keys
	}
	return t, keys, nil
}

// isRegistryRef mirrors the image store's rule: a first path component
// with a dot or a port, or localhost, names a registry host.
func isRegistryRef(s string) bool {
	if strings.HasPrefix(s, image.LayoutPrefix) || strings.HasPrefix(s, image.ArchivePrefix) {
		return false
	}
	host, _, ok := strings.Cut(s, "/")
	return ok && (strings.ContainsAny(host, ".:") || host == "localhost")
}

// checkImage inspects ref and judges it.
func (f *checkFlags) checkImage(ctx context.Context, ref string) (policy.Decision, error) {
	var block *policy.Severity
	if f.block != "" {
		b, err := policy.ParseSeverity(f.block)
		if err != nil {
			return policy.Decision{}, withCode(ExitInvalid, fmt.Errorf("--block-severity: %w", err))
		}
		block = &b
	}
	eng, err := f.engine()
	if err != nil {
		return policy.Decision{}, err
	}
	tenant, keys, err := f.tenantPolicy()
	if err != nil {
		return policy.Decision{}, err
	}
	img, digest, nref, err := f.resolve(ctx, ref)
	if err != nil {
		return policy.Decision{}, err
	}
	in := policy.ImageInput{Tenant: tenant, Ref: ref, Digest: digest.String(), BlockSeverity: block}
	if nref != nil {
		in.Repository = nref.Context().Name()
	}
	if len(tenant.Spec.Images.SignedBy) > 0 {
		in.Signature = f.verify(ctx, nref, digest, keys)
	}
	db, err := f.openVulnDB(ctx)
	if err != nil {
		return policy.Decision{}, err
	}
	opts := scan.Options{}
	if db != nil {
		defer db.Close()
		opts.Advisories = db
	}
	res, err := scan.Inspect(ctx, img, opts)
	if err != nil {
		return policy.Decision{}, err
	}
	in.Facts = res.Facts
	in.Now = time.Now().UTC()
	return eng.Image(in), nil
}

func (f *checkFlags) remoteOptions(ctx context.Context) ([]name.Option, []remote.Option) {
	var nopts []name.Option
	if f.insecure {
		nopts = append(nopts, name.Insecure)
	}
	return nopts, []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
}

// resolve finds ref in the store (or an oci-layout/docker-archive in
// place), else, for a registry reference, reads it from the registry by
// digest after resolving a tag once.
func (f *checkFlags) resolve(ctx context.Context, ref string) (ggcrv1.Image, ggcrv1.Hash, name.Reference, error) {
	var nref name.Reference
	nopts, ropts := f.remoteOptions(ctx)
	if isRegistryRef(ref) {
		r, err := name.ParseReference(ref, nopts...)
		if err != nil {
			return nil, ggcrv1.Hash{}, nil, withCode(ExitInvalid, fmt.Errorf("%w %q: %v", image.ErrInvalidRef, ref, err))
		}
		nref = r
	}
	store, err := image.Open(ctx, f.dataDir)
	if err != nil {
		return nil, ggcrv1.Hash{}, nil, err
	}
	img, digest, err := store.Resolve(ctx, ref)
	if err == nil {
		return img, digest, nref, nil
	}
	if nref == nil || !errors.Is(err, image.ErrNotFound) {
		return nil, ggcrv1.Hash{}, nil, imageErr(err)
	}
	pinned, err := sign.Resolve(ctx, nref, ropts...)
	if err != nil {
		return nil, ggcrv1.Hash{}, nil, err
	}
	img, err = remote.Image(pinned, ropts...)
	if err != nil {
		return nil, ggcrv1.Hash{}, nil, fmt.Errorf("read %s: %w", pinned, err)
	}
	digest, err = ggcrv1.NewHash(pinned.DigestStr())
	if err != nil {
		return nil, ggcrv1.Hash{}, nil, err
	}
	return img, digest, nref, nil
}

// verify checks the signatures stored next to the image in its registry.
func (f *checkFlags) verify(ctx context.Context, nref name.Reference, digest ggcrv1.Hash, keys []sign.Key) *policy.Signature {
	if nref == nil {
		return &policy.Signature{Reason: "not a registry reference: cosign signatures are read from the image's registry"}
	}
	_, ropts := f.remoteOptions(ctx)
	sigs, err := sign.Signatures(ctx, nref.Context(), digest, ropts...)
	if err != nil {
		return &policy.Signature{Reason: err.Error()}
	}
	k, err := sign.VerifySignatures(digest, sigs, keys)
	if err != nil {
		return &policy.Signature{Reason: err.Error()}
	}
	return &policy.Signature{Verified: true, Key: k.Name}
}

// openVulnDB opens the database named by --vulndb (which must exist) or the
// default one (which may not).
func (f *checkFlags) openVulnDB(ctx context.Context) (*vulndb.DB, error) {
	path := f.vulnDB
	if path == "" {
		path = filepath.Join(f.dataDir, vulnDBName)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	db, err := vulndb.Open(ctx, path, vulndb.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	return db, nil
}

// print writes the decisions and returns the exit status: ExitRejected
// when any was rejected.
func (f *checkFlags) print(w io.Writer, ds []policy.Decision) error {
	var err error
	switch f.output {
	case outJSON:
		if len(ds) == 1 {
			err = writeJSON(w, ds[0])
		} else {
			err = writeJSON(w, ds)
		}
	case outSARIF:
		err = writeJSON(w, policy.SARIF(ds...))
	default:
		for i, d := range ds {
			if i > 0 {
				fmt.Fprintln(w)
			}
			if err = writeDecision(w, d); err != nil {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	if slices.ContainsFunc(ds, func(d policy.Decision) bool { return !d.Allowed }) {
		return silent{code: ExitRejected}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeDecision prints one decision for people: a header, the findings
// (most severe first), each check's fix once, then notes and skipped checks.
func writeDecision(w io.Writer, d policy.Decision) error {
	subject := d.Subject
	if d.Digest != "" {
		subject += " (" + d.Digest + ")"
	}
	verdict := "ADMITTED"
	if !d.Allowed {
		verdict = fmt.Sprintf("REJECTED: %d finding(s)", len(d.Findings))
	}
	fmt.Fprintf(w, "%s %s: %s\n", d.Kind, subject, verdict)
	if d.Tenant != "" {
		fmt.Fprintf(w, "tenant: %s\n", d.Tenant)
	}
	table := func(title string, fs []policy.Finding) {
		if len(fs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tCHECK\tDETAIL")
		for _, f := range fs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Severity, f.ID, f.Detail)
		}
		tw.Flush()
	}
	table("findings", d.Findings)
	if len(d.Findings) > 0 {
		fmt.Fprintln(w, "\nfixes:")
		seen := map[string]bool{}
		for _, f := range d.Findings {
			line := f.ID + ": " + f.Fix
			if f.Advisory != "" {
				line = f.Advisory + ": " + f.Fix
			}
			if !seen[line] {
				seen[line] = true
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
	}
	table("notes (do not reject)", d.Notes)
	if len(d.Skipped) > 0 {
		fmt.Fprintln(w, "\nskipped:")
		for _, s := range d.Skipped {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	fmt.Fprintf(w, "\n%d checks ran\n", len(d.Checked))
	return nil
}
