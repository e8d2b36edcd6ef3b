// Package replica turns a replica's description (tenant, tier, image,
// command, limits) into a running, hardened process on this node: it
// resolves the image, unpacks it into a rootfs owned by the tenant's UID
// range, writes a hardened bundle and hands it to the tier's driver. It is
// the node-side I/O half; the scheduler decides, this package does.
package replica

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	gcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/durable"
	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/logfile"
	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/noisy"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/scan"
	"rung.dev/rung/internal/sign"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
	"rung.dev/rung/internal/vulndb"
)

// Errors callers can check with errors.Is.
var (
	ErrInvalid     = errors.New("invalid replica")
	ErrNotFound    = errors.New("replica not found")
	ErrUnavailable = errors.New("tier unavailable on this node")
	ErrExclusive   = errors.New("host tier needs a host without other tenants")
	ErrRejected    = errors.New("rejected by admission")
)

// Spec is one replica to run.
type Spec struct {
	ID     string       `json:"id"`
	Tenant string       `json:"tenant"`
	Tier   tenancy.Tier `json:"tier"`
	Image  string       `json:"image"`
	// Args replace the image's Cmd (its Entrypoint stays), as in Docker.
	Args      []string           `json:"args,omitempty"`
	Env       []string           `json:"env,omitempty"`
	Resources topology.Resources `json:"resources"`
	// Limits, when set, let the replica burst above Resources (then its
	// requests: CPU shares and memory soft limit) up to them (CFS quota,
	// memory limit). PIDs have no burst.
	Limits *topology.Resources `json:"limits,omitempty"`
	// Noisy is the site's noisy-neighbour policy; the agent applies it.
	Noisy        *noisy.Policy `json:"noisy,omitempty"`
	Capabilities []string      `json:"capabilities,omitempty"`
	// Images is the tenant's image policy (registry allow-list, and PEM
	// public keys in SignedBy); nil checks neither. With SignedBy the
	// image must be a registry reference with a cosign signature by one of
	// the keys, and the verified digest is what runs.
	Images *v1.ImagePolicy `json:"images,omitempty"`
	// Admission is the site's admission configuration (operator rules from
	// the Policies); nil means the built-in checks only. It never weakens
	// them: rules only add findings.
	Admission *policy.Config `json:"admission,omitempty"`
	// RestartPolicy is the workload's (v1.RestartAlways when empty); the
	// agent applies it.
	RestartPolicy v1.RestartPolicy `json:"restartPolicy,omitempty"`
	// Healthcheck overrides the image's HEALTHCHECK.
	Healthcheck *Healthcheck `json:"healthcheck,omitempty"`
	// Template names the version of the workload this replica runs (the
	// control plane's, for rollouts); a new template is a new replica.
	Template string `json:"template,omitempty"`
	// Secrets are the tenant's Secrets the replica gets as files; their
	// values come in SecretData, which the agent fetches before each start
	// and which is never stored or sent with the spec.
	Secrets    []SecretMount                `json:"secrets,omitempty"`
	SecretData map[string]map[string]string `json:"-"`
	// Network is the replica's tenant network (DESIGN §9); nil keeps a
	// loopback-only network namespace. The network plugin applies it.
	Network *network.Spec `json:"network,omitempty"`
	// Volumes are the tenant's volumes the replica mounts (volumes.go).
	Volumes []VolumeMount `json:"volumes,omitempty"`
}

// Record is what the node keeps about a replica it prepared.
type Record struct {
	Spec    Spec      `json:"spec"`
	Digest  string    `json:"digest"`
	Created time.Time `json:"created"`
	UIDBase uint32    `json:"uidBase"`
	// Healthcheck is the check the agent runs: the spec's, else the
	// image's HEALTHCHECK; nil for none.
	Healthcheck *Healthcheck `json:"healthcheck,omitempty"`
}

// Node runs replicas on this machine under a data directory:
//
//	DIR/images/            the OCI image store
//	DIR/runtimes/{runc,runsc}/  driver state and replica logs
//	DIR/replicas/ID/       bundle (config.json, rootfs/) and replica.json
//	DIR/tenants.json       tenant → UID range registry
type Node struct {
	dir    string
	images *image.Store
	runc   *runtime.OCI
	runsc  *runtime.OCI
	vm     *microvm.Driver
	// tiers is the tier → driver lookup; every driver is in drivers.
	tiers   map[tenancy.Tier]tierDriver
	drivers []tierDriver
	log     *slog.Logger
	cgroups string
	// admission re-checks every replica's final runtime spec and its
	// image (DESIGN §6).
	admission *policy.Engine
	mu        sync.Mutex
	admitted  map[string]bool // tenant@digest whose image passed
	// decisions are the admission decisions made here and not yet taken
	// for the audit log (TakeDecisions); noted dedupes them.
	decisions []policy.Decision
	noted     map[string]bool
	engines   map[string]*policy.Engine // by admission configuration (JSON)
	registry  image.PullOptions
	roots     string // replicas' root filesystems (roots.go)
	// attachers give replicas their per-replica resources (attach.go):
	// secrets first, then the Options' in order.
	attachers []Attacher
}

// Options configure a Node.
type Options struct {
	// RunscPlatform is gVisor's platform; default ptrace.
	RunscPlatform string
	// RunscBinary is runsc's path (default: runsc in PATH) and
	// RunscNetwork its --network (default none: loopback only). "sandbox"
	// only with a runsc that runtime.ProbeSandboxNetwork passed
	// (plugins.OpenNode decides both from the operator's --runsc).
	RunscBinary, RunscNetwork string
	// VM configures the vm tier (its Dir is DIR/runtimes/vm). Without KVM
	// the tier is unavailable unless VM.AllowEmulated (tests only).
	VM     microvm.Options
	Logger *slog.Logger
	// CgroupParent is the cgroup under which replicas live, as
	// PARENT/TENANT/ID (default /rung/SCOPE, SCOPE named after the data
	// directory, so two data directories never share). Agents sharing one machine (several
	// `rung agent` processes, each a node) set one per node, /rung/NODE, so
	// that a replica re-placed between them never shares a cgroup.
	CgroupParent string
	// Registry configures pulls and signature checks of replicas whose
	// tenant requires signatures (Transport, Insecure, Keychain).
	Registry image.PullOptions
	// LogMaxSize caps each replica's current log file; one rotated
	// segment is kept besides, and the previous run's log (0: 10 MiB).
	LogMaxSize int64
	// Attachers add per-replica resources (networks, volumes…), listed
	// in one place: internal/plugins. Secrets are built in.
	Attachers []Attacher
}

// Open prepares the data directory and the drivers.
func Open(ctx context.Context, dir string, opts Options) (*Node, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	abs, err := PrepareDir(dir)
	if err != nil {
		return nil, err
	}
	store, err := image.Open(ctx, abs)
	if err != nil {
		return nil, err
	}
	runc, err := runtime.NewRunc(runtime.Config{Dir: filepath.Join(abs, "runtimes", "runc"), Logger: opts.Logger, LogMaxSize: opts.LogMaxSize})
	if err != nil {
		return nil, err
	}
	runsc, err := runtime.NewRunsc(runtime.Config{Dir: filepath.Join(abs, "runtimes", "runsc"), Platform: opts.RunscPlatform, Binary: opts.RunscBinary, Network: opts.RunscNetwork, Logger: opts.Logger, LogMaxSize: opts.LogMaxSize})
	if err != nil {
		return nil, err
	}
	vmo := opts.VM
	vmo.Dir, vmo.Logger, vmo.LogMaxSize = filepath.Join(abs, "runtimes", "vm"), opts.Logger, opts.LogMaxSize
	vm, err := microvm.New(vmo)
	if err != nil {
		return nil, err
	}
	adm, err := policy.New(policy.Config{})
	if err != nil {
		return nil, err
	}
	// Each data directory's replicas get cgroups of their own, so that two
	// on one machine (rung up and rung demo, say) never meet in one.
	sum := sha256.Sum256([]byte(abs))
	cgroups := "/rung/" + hex.EncodeToString(sum[:4])
	if opts.CgroupParent != "" {
		cgroups = "/" + strings.Trim(filepath.Clean(opts.CgroupParent), "/")
	}
	rootsParent, err := rootsParent(abs)
	if err != nil {
		return nil, err
	}
	roots := filepath.Join(rootsParent, hex.EncodeToString(sum[:4]))
	// 0711 like the data directory: searched from tenants' namespaces. The
	// SCOPE directory is made with the first replica (makeRoot).
	if err := os.MkdirAll(rootsParent, 0o711); err != nil {
		return nil, fmt.Errorf("replica roots: %w", err)
	}
	if err := os.Chmod(rootsParent, 0o711); err != nil {
		return nil, fmt.Errorf("replica roots: %w", err)
	}
	sweepRoots(rootsParent)
	return &Node{roots: roots, dir: abs, images: store, runc: runc, runsc: runsc, vm: vm, log: opts.Logger,
		tiers:   map[tenancy.Tier]tierDriver{tenancy.Container: runc, tenancy.Host: runc, tenancy.Sandbox: runsc, tenancy.VM: vm},
		drivers: []tierDriver{runc, runsc, vm}, cgroups: cgroups, admission: adm, admitted: map[string]bool{}, noted: map[string]bool{}, engines: map[string]*policy.Engine{}, registry: opts.Registry,
		attachers: append([]Attacher{secretsAttacher{}}, opts.Attachers...)}, nil
}

// Images is the node's image store.
func (n *Node) Images() *image.Store { return n.images }

// Dir is the data directory.
func (n *Node) Dir() string { return n.dir }

// EnsureBusybox packs the project's busybox image (from Debian's
// busybox-static) into the store as ref, unless it is there already.
func (n *Node) EnsureBusybox(ctx context.Context, ref string) error {
	if _, _, err := n.images.Resolve(ctx, ref); err == nil {
		return nil
	}
	root, err := os.MkdirTemp("", "rung-busybox-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if err := image.BusyboxRoot(root); err != nil {
		return fmt.Errorf("busybox image (install busybox-static): %w", err)
	}
	_, err = n.images.Pack(ctx, root, ref, image.PackOptions{Healthcheck: image.BusyboxHealthcheck()})
	return err
}

// Availability probes every tier's runtime on this node (cached per driver).
func (n *Node) Availability(ctx context.Context) map[tenancy.Tier]runtime.Availability {
	out := map[tenancy.Tier]runtime.Availability{
		tenancy.Container: n.runc.Detect(ctx),
		tenancy.Sandbox:   n.runsc.Detect(ctx),
		tenancy.VM:        n.vm.Detect(ctx),
	}
	h := out[tenancy.Container]
	h.Tier = "host"
	out[tenancy.Host] = h
	return out
}

// Runtimes is the set of tiers this node can run now.
func (n *Node) Runtimes(ctx context.Context) tenancy.Set {
	var s tenancy.Set
	for t, a := range n.Availability(ctx) {
		if a.Available {
			s = s.With(t)
		}
	}
	return s
}

// tierDriver is what the node needs of a tier's driver: runtime.OCI (runc,
// runsc) and microvm.Driver have it.
type tierDriver interface {
	runtime.Driver
	Detect(ctx context.Context) runtime.Availability
	ReadLogs(ctx context.Context, id string, o logfile.ReadOptions) (io.ReadCloser, error)
	HasLogs(id string) bool
	PurgeLogs(ctx context.Context, id string) error
}

// Driver returns the driver of tier t, or an error saying why the tier
// can't run here. There is no fallback to a weaker tier.
func (n *Node) Driver(ctx context.Context, t tenancy.Tier) (runtime.Driver, error) {
	d, err := n.driverFor(t)
	if err != nil {
		return nil, err
	}
	if a := d.Detect(ctx); !a.Available {
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, t, a.Reason)
	}
	return d, nil
}

// VM is the vm tier's driver (rung verify, status: whether it emulates).
func (n *Node) VM() *microvm.Driver { return n.vm }

var idRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)

func (s *Spec) validate() error {
	switch {
	case !idRE.MatchString(s.ID):
		return fmt.Errorf("%w: id %q: use lowercase letters, digits and '-', at most 64", ErrInvalid, s.ID)
	case !idRE.MatchString(s.Tenant):
		return fmt.Errorf("%w: tenant %q is not a DNS label", ErrInvalid, s.Tenant)
	case s.Image == "":
		return fmt.Errorf("%w: image is empty", ErrInvalid)
	case s.Tier < tenancy.Container || s.Tier > tenancy.Host:
		return fmt.Errorf("%w: tier %s", ErrInvalid, s.Tier)
	}
	return nil
}

func (n *Node) replicaDir(id string) string { return filepath.Join(n.dir, "replicas", id) }

// Prepare resolves the image and writes the replica's bundle: a rootfs
// unpacked with every file owned by the tenant's UID range, and a hardened
// config.json. It returns the bundle directory. A failure leaves nothing.
func (n *Node) Prepare(ctx context.Context, s Spec) (dir string, err error) {
	if err := s.validate(); err != nil {
		return "", err
	}
	if s.Tier == tenancy.Host {
		if err := n.exclusive(s.Tenant); err != nil {
			return "", err
		}
	}
	ref, sig, err := n.imagePolicy(ctx, s)
	if err != nil {
		return "", err
	}
	img, digest, err := n.images.Resolve(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("replica %s: image %s: %w", s.ID, s.Image, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", fmt.Errorf("replica %s: image config: %w", s.ID, err)
	}
	// One engine for this replica: the built-ins plus the site's rules.
	eng, err := n.engine(s.Admission)
	if err != nil {
		return "", fmt.Errorf("replica %s: admission rules: %w", s.ID, err)
	}
	if err := n.admitImage(ctx, s, eng, img, digest.String(), sig); err != nil {
		return "", err
	}
	r, err := n.TenantRange(s.Tenant)
	if err != nil {
		return "", err
	}
	dir = n.replicaDir(s.ID)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("%w: replica %s already exists", ErrInvalid, s.ID)
		}
		return "", err
	}
	attached := false
	defer func() {
		if err != nil {
			if attached {
				_ = n.detach(context.WithoutCancel(ctx), s.ID, &s)
			}
			_ = n.removeReplica(s.ID)
		}
	}()
	// The root lives under a neutral path (roots.go); rootfs links to it.
	rootfs, err := n.makeRoot(s.ID)
	if err != nil {
		return "", err
	}
	if err := os.Symlink(rootfs, filepath.Join(dir, "rootfs")); err != nil {
		return "", err
	}
	if err := image.Unpack(ctx, img, rootfs, image.UnpackOptions{
		Chown: image.ShiftIDs(int(r.HostUID), int(r.HostGID), int(r.Size)),
	}); err != nil {
		return "", fmt.Errorf("replica %s: %w", s.ID, err)
	}
	// The rootfs directory itself belongs to the tenant's root.
	if err := os.Lchown(rootfs, int(r.HostUID), int(r.HostGID)); err != nil {
		return "", err
	}
	args := append(append([]string{}, cfg.Config.Entrypoint...), cfg.Config.Cmd...)
	if len(s.Args) > 0 {
		args = append(append([]string{}, cfg.Config.Entrypoint...), s.Args...)
	}
	if len(args) == 0 {
		return "", fmt.Errorf("%w: replica %s: no command (the image has no entrypoint or cmd; pass one)", ErrInvalid, s.ID)
	}
	uid, gid, err := imageUser(cfg.Config.User)
	if err != nil {
		return "", fmt.Errorf("replica %s: %w", s.ID, err)
	}
	if uid >= r.Size || gid >= r.Size {
		return "", fmt.Errorf("%w: replica %s: image user %d:%d is outside the tenant's range of %d ids", ErrInvalid, s.ID, uid, gid, r.Size)
	}
	// Per-replica resources (attach.go): secrets on tmpfs mounts inside
	// the root, owned by the replica's user as the host sees it, and
	// whatever the plugins add.
	att := &Attachment{Spec: s, Rootfs: rootfs, Range: r, UID: r.HostUID + uid, GID: r.HostGID + gid}
	attached = true
	if err := n.attach(ctx, att); err != nil {
		attached = false // attach undid its own
		return "", fmt.Errorf("replica %s: %w", s.ID, err)
	}
	env := append(append([]string{}, cfg.Config.Env...), s.Env...)
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	res := withDefaults(s.Resources)
	if s.Tier == tenancy.Sandbox {
		res = sandboxLimits(res)
	}
	opts := []bundle.Opt{
		bundle.WithRootfs(rootfs),
		bundle.WithUserNamespace(r),
		bundle.WithProcess(args, env, cwd(cfg.Config.WorkingDir)),
		bundle.WithUser(uid, gid),
		bundle.WithHostname(s.ID),
		bundle.WithResources(res.MilliCPU, res.Memory, res.PIDs),
		bundle.WithCgroupsPath(fmt.Sprintf("%s/%s/%s", n.cgroups, s.Tenant, s.ID)),
		bundle.WithAnnotations(map[string]string{
			"dev.rung.tenant": s.Tenant, "dev.rung.tier": s.Tier.String(), "dev.rung.image": digest.String(),
		}),
	}
	if s.Limits != nil {
		lim := burstLimits(res, *s.Limits, s.Tier)
		opts = append(opts, bundle.WithBurst(res.MilliCPU, lim.MilliCPU, res.Memory, lim.Memory))
	}
	if len(s.Capabilities) > 0 {
		opts = append(opts, bundle.WithCapabilities(s.Capabilities...))
	}
	opts = append(opts, att.Opts...)
	spec, err := bundle.New(opts...)
	if err != nil {
		return "", fmt.Errorf("replica %s: %w", s.ID, err)
	}
	// Admission again, now with the exact spec the runtime will get: the
	// checks that need it (user, mounts, seccomp, limits…) run here.
	tenant := v1.Tenant{Metadata: v1.ObjectMeta{Name: s.Tenant}}
	if s.Images != nil {
		tenant.Spec.Images = *s.Images // its blockSeverity applies to CIS-4.1
	}
	d := eng.Workload(policy.WorkloadInput{
		Tenant:   tenant,
		Workload: v1.Workload{Metadata: v1.ObjectMeta{Name: s.ID, Tenant: s.Tenant}, Spec: v1.WorkloadSpec{Image: s.Image, Capabilities: s.Capabilities, Privilege: privilegeOf(s)}},
		Runtime:  spec,
		Now:      time.Now(),
	})
	if !d.Allowed {
		n.note(d) // admitted ones were audited when applied
		return "", fmt.Errorf("replica %s: %w: %w", s.ID, ErrRejected, d.Err())
	}
	hc, err := effectiveHealthcheck(s, cfg.Config.Healthcheck)
	if err != nil {
		return "", fmt.Errorf("replica %s: %w", s.ID, err)
	}
	if err := bundle.Write(dir, spec); err != nil {
		return "", err
	}
	rec, err := json.MarshalIndent(Record{Spec: s, Digest: digest.String(), Created: time.Now().UTC(), UIDBase: r.HostUID, Healthcheck: hc}, "", "  ")
	if err != nil {
		return "", err
	}
	if err := durable.WriteFile(filepath.Join(dir, "replica.json"), rec); err != nil {
		return "", err
	}
	return dir, nil
}

// admitImage runs the image checks (DESIGN §6: user, setuid files, secrets,
// ports, healthcheck, vulnerabilities when DATA/vulndb.db exists) on the
// digest that is about to run, once per digest per tenant: nothing runs
// unless its image passed. The tenant's registry allow-list and signature
// requirement (s.Images) are checked by imagePolicy before; sig is its
// verification, nil when the tenant requires none.
func (n *Node) admitImage(ctx context.Context, s Spec, eng *policy.Engine, img gcrv1.Image, digest string, sig *policy.Signature) error {
	key := s.Tenant + "@" + digest
	if s.Images != nil {
		// A different policy is a different decision.
		pol, _ := json.Marshal(s.Images)
		key += " " + string(pol)
	}
	if s.Admission != nil {
		rules, _ := json.Marshal(s.Admission)
		key += " " + string(rules)
	}
	n.mu.Lock()
	ok := n.admitted[key]
	n.mu.Unlock()
	if ok {
		return nil
	}
	opts := scan.Options{}
	if db, err := vulndb.Open(ctx, filepath.Join(n.dir, "vulndb.db"), vulndb.Options{ReadOnly: true}); err == nil {
		defer db.Close()
		opts.Advisories = db
	}
	res, err := scan.Inspect(ctx, img, opts)
	if err != nil {
		return fmt.Errorf("replica %s: inspect image %s: %w", s.ID, s.Image, err)
	}
	in := policy.ImageInput{
		Tenant: v1.Tenant{Metadata: v1.ObjectMeta{Name: s.Tenant}},
		Ref:    s.Image, Digest: digest, Facts: res.Facts, Now: time.Now(),
	}
	if s.Images != nil {
		in.Tenant.Spec.Images = *s.Images
		in.Signature = sig
		if r, err := n.parseRef(s.Image); err == nil {
			in.Repository = r.Context().Name()
		}
	}
	d := eng.Image(in)
	n.note(d)
	if !d.Allowed {
		return fmt.Errorf("replica %s: image %s: %w: %w", s.ID, s.Image, ErrRejected, d.Err())
	}
	n.mu.Lock()
	n.admitted[key] = true
	n.mu.Unlock()
	return nil
}

// maxPendingDecisions bounds the decisions kept for the audit log between
// two takes; maxNoted bounds the dedupe memory.
const (
	maxPendingDecisions = 256
	maxNoted            = 10000
)

// note keeps d for the audit log (DESIGN §6: every admission decision,
// with its findings and the image digest). The same decision again (a
// replica retried with back-off) is kept once.
func (n *Node) note(d policy.Decision) {
	ids := make([]string, 0, len(d.Findings))
	for _, f := range d.Findings {
		ids = append(ids, f.ID+" "+f.Detail)
	}
	key := fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%v\x00%s", d.Kind, d.Tenant, d.Subject, d.Digest, d.Allowed, strings.Join(ids, "\x00"))
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.noted[key] {
		return
	}
	if len(n.noted) >= maxNoted {
		clear(n.noted)
	}
	n.noted[key] = true
	if len(n.decisions) >= maxPendingDecisions {
		n.decisions = n.decisions[1:]
	}
	n.decisions = append(n.decisions, d.Bounded())
}

// TakeDecisions returns the admission decisions made since the last take,
// oldest first, for the control plane's audit log.
func (n *Node) TakeDecisions() []policy.Decision {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.decisions
	n.decisions = nil
	return out
}

// privilegeOf says elevated when the replica asks for a capability: only
// elevated workloads may have one (the allow-list still applies).
func privilegeOf(s Spec) v1.Privilege {
	if len(s.Capabilities) > 0 {
		return v1.PrivilegeElevated
	}
	return v1.PrivilegeStandard
}

// withDefaults fills limits a replica must always have (DESIGN §1: cgroup
// CPU, memory and PIDs limits are always on).
func withDefaults(r topology.Resources) topology.Resources {
	if r.MilliCPU <= 0 {
		r.MilliCPU = 1000
	}
	if r.Memory <= 0 {
		r.Memory = 256 << 20
	}
	if r.PIDs <= 0 {
		r.PIDs = 128
	}
	return r
}

// sandboxLimits widens a sandbox's cgroup limits by gVisor's own share:
// its sentry and gofer live in the replica's cgroup, the sentry uses about
// 25 MiB, and it runs about six host tasks per workload process, so the
// workload's own PIDs limit (enforced inside gVisor as well) would
// otherwise starve the sentry and crash the sandbox. The scheduler counts
// the same memory as the sandbox tier's overhead.
func sandboxLimits(r topology.Resources) topology.Resources {
	r.Memory += 64 << 20
	r.PIDs = r.PIDs*6 + 64
	return r
}

// burstLimits are the limits of a burstable replica whose requests (with
// defaults and the sandbox's share) are res: never below them, and
// widened by the sandbox's memory share like the request.
func burstLimits(res, lim topology.Resources, t tenancy.Tier) topology.Resources {
	if t == tenancy.Sandbox && lim.Memory > 0 {
		lim.Memory += 64 << 20
	}
	lim.MilliCPU = max(lim.MilliCPU, res.MilliCPU)
	lim.Memory = max(lim.Memory, res.Memory)
	return lim
}

func cwd(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}

// imageUser parses the image's "uid[:gid]" user. Names would need the
// image's /etc/passwd; rung images use numbers. An empty user runs as
// nobody (65534), never as root by default.
func imageUser(u string) (uint32, uint32, error) {
	if u == "" {
		return 65534, 65534, nil
	}
	var uid, gid uint32
	if n, _ := fmt.Sscanf(u, "%d:%d", &uid, &gid); n == 2 {
		return uid, gid, nil
	}
	if n, _ := fmt.Sscanf(u, "%d", &uid); n == 1 && fmt.Sprint(uid) == u {
		return uid, uid, nil
	}
	return 0, 0, fmt.Errorf("%w: image user %q: use a numeric uid[:gid]", ErrInvalid, u)
}

// exclusive refuses a host-tier replica when another tenant has replicas
// on this node.
func (n *Node) exclusive(tenant string) error {
	recs, err := n.Records()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.Spec.Tenant != tenant {
			return fmt.Errorf("%w: tenant %s has replica %s here", ErrExclusive, r.Spec.Tenant, r.Spec.ID)
		}
	}
	return nil
}

// Records lists the replicas prepared on this node, by id.
func (n *Node) Records() ([]Record, error) {
	entries, err := os.ReadDir(filepath.Join(n.dir, "replicas"))
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(n.dir, "replicas", e.Name(), "replica.json"))
		if err != nil {
			continue // being prepared or removed
		}
		var r Record
		if err := json.Unmarshal(data, &r); err != nil || r.Spec.ID != e.Name() {
			continue // corrupt: Leftovers reports it
		}
		out = append(out, r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Spec.ID < out[b].Spec.ID })
	return out, nil
}

// Run runs a replica to completion (rung run): prepare, create, start,
// wait, then delete the container and its bundle, also on error.
func (n *Node) Run(ctx context.Context, s Spec, stdio runtime.IO) (runtime.Exit, error) {
	d, err := n.Driver(ctx, s.Tier)
	if err != nil {
		return runtime.Exit{}, err
	}
	dir, err := n.Prepare(ctx, s)
	if err != nil {
		return runtime.Exit{}, err
	}
	defer func() {
		_ = n.detach(context.WithoutCancel(ctx), s.ID, &s)
		_ = n.removeReplica(s.ID)
	}()
	if !n.hasCreatedHooks() {
		return runtime.Run(ctx, d, s.ID, dir, stdio)
	}
	// A plugin acts between create and start: the long way round.
	if err := d.Create(ctx, s.ID, dir, stdio); err != nil {
		return runtime.Exit{}, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = d.Delete(dctx, s.ID)
	}()
	if err := n.afterCreate(ctx, d, s); err != nil {
		return runtime.Exit{}, err
	}
	if err := d.Start(ctx, s.ID); err != nil {
		return runtime.Exit{}, err
	}
	exit, err := d.Wait(ctx, s.ID)
	if err != nil && ctx.Err() != nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = d.Kill(kctx, s.ID, syscall.SIGKILL)
		if e, werr := d.Wait(kctx, s.ID); werr == nil {
			exit = e
		}
	}
	return exit, err
}

// hasCreatedHooks says whether a plugin acts between create and start.
func (n *Node) hasCreatedHooks() bool {
	for _, at := range n.attachers {
		if _, ok := at.(CreatedAttacher); ok {
			return true
		}
	}
	return false
}

// afterCreate runs the CreatedAttachers on a created replica.
func (n *Node) afterCreate(ctx context.Context, d runtime.Driver, s Spec) error {
	if !n.hasCreatedHooks() {
		return nil
	}
	st, err := d.State(ctx, s.ID)
	if err != nil {
		return err
	}
	return n.created(ctx, s, st.Pid)
}

// Start prepares and starts a long-running replica; its output goes to the
// driver's log file.
func (n *Node) Start(ctx context.Context, s Spec) error {
	d, err := n.Driver(ctx, s.Tier)
	if err != nil {
		return err
	}
	dir, err := n.Prepare(ctx, s)
	if err != nil {
		return err
	}
	if err := d.Create(ctx, s.ID, dir, runtime.IO{}); err != nil {
		_ = n.detach(context.WithoutCancel(ctx), s.ID, &s)
		_ = n.removeReplica(s.ID)
		return err
	}
	err = n.afterCreate(ctx, d, s)
	if err == nil {
		err = d.Start(ctx, s.ID)
	}
	if err != nil {
		_ = d.Delete(context.WithoutCancel(ctx), s.ID)
		_ = n.detach(context.WithoutCancel(ctx), s.ID, &s)
		_ = n.removeReplica(s.ID)
		return err
	}
	return nil
}

// Remove kills and deletes a replica and its bundle; its last run's log
// stays as the previous one (Logs with Previous; Purge deletes it). A
// directory left without a record (a crash while preparing) is cleaned up
// too, trying every driver, so nothing leaks.
func (n *Node) Remove(ctx context.Context, id string) error {
	rec, err := n.record(id)
	var spec *Spec
	if err == nil {
		spec = &rec.Spec
	}
	drivers := n.drivers
	switch {
	case err == nil:
		d, err := n.driverFor(rec.Spec.Tier)
		if err != nil {
			return err
		}
		drivers = []tierDriver{d}
	case errors.Is(err, ErrNotFound):
		if _, serr := os.Stat(n.replicaDir(id)); serr != nil {
			return err
		}
	default:
		if !idRE.MatchString(id) {
			return err
		}
	}
	for _, d := range drivers {
		if err := d.Kill(ctx, id, syscall.SIGKILL); err != nil && !errors.Is(err, runtime.ErrNotRunning) && !errors.Is(err, runtime.ErrNotFound) {
			return err
		}
		if err := d.Delete(ctx, id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return err
		}
	}
	if err := n.detach(ctx, id, spec); err != nil {
		return err
	}
	return n.removeReplica(id)
}

// Leftovers lists replica directories that have no readable record: a
// crash while preparing, or a corrupt record. The agent removes them.
func (n *Node) Leftovers() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(n.dir, "replicas"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if _, err := n.record(e.Name()); err != nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// State reports a replica's runtime state.
func (n *Node) State(ctx context.Context, id string) (runtime.State, error) {
	rec, err := n.record(id)
	if err != nil {
		return runtime.State{}, err
	}
	d, err := n.driverFor(rec.Spec.Tier)
	if err != nil {
		return runtime.State{}, err
	}
	return d.State(ctx, id)
}

// OCI returns the OCI driver that runs tier t (runc for container and host,
// runsc for sandbox), for inspection by `rung verify`.
func (n *Node) OCI(t tenancy.Tier) (*runtime.OCI, error) {
	d, err := n.driverFor(t)
	if err != nil {
		return nil, err
	}
	o, ok := d.(*runtime.OCI)
	if !ok {
		return nil, fmt.Errorf("%w: tier %s is not run by an OCI runtime", ErrUnavailable, t)
	}
	return o, nil
}

// driverFor is the tier → driver lookup.
func (n *Node) driverFor(t tenancy.Tier) (tierDriver, error) {
	if d, ok := n.tiers[t]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w: tier %s has no driver here", ErrUnavailable, t)
}

func (n *Node) record(id string) (Record, error) {
	if !idRE.MatchString(id) {
		return Record{}, fmt.Errorf("%w: id %q", ErrInvalid, id)
	}
	data, err := os.ReadFile(filepath.Join(n.replicaDir(id), "replica.json"))
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return Record{}, fmt.Errorf("replica %s: corrupt record: %w", id, err)
	}
	return r, nil
}

// imagePolicy applies the tenant's image policy (s.Images) before anything
// is unpacked: the registry allow-list and, when SignedBy names keys, the
// signature. A signed image is resolved from its registry once, that
// digest's cosign signature is verified, exactly that digest is pulled
// into the store, and REPO@DIGEST is returned to run: never the tag again.
// Without a policy it returns s.Image and a nil signature.
func (n *Node) imagePolicy(ctx context.Context, s Spec) (string, *policy.Signature, error) {
	p := s.Images
	if p == nil || len(p.Registries) == 0 && len(p.SignedBy) == 0 {
		return s.Image, nil, nil
	}
	reject := func(format string, a ...any) (string, *policy.Signature, error) {
		why := fmt.Sprintf(format, a...)
		id, detail, _ := strings.Cut(why, ": ")
		n.note(policy.Decision{Kind: policy.KindImage, Tenant: s.Tenant, Subject: s.Image, Time: time.Now(), Checked: []string{id},
			Findings: []policy.Finding{{ID: id, Title: "Image policy of the tenant", Severity: policy.SeverityHigh, Detail: detail,
				Fix: "run an image from an allowed registry, signed by one of the tenant's signedBy keys"}}})
		return "", nil, fmt.Errorf("replica %s: image %s: %w: %s", s.ID, s.Image, ErrRejected, why)
	}
	var nref name.Reference
	if isRegistryRef(s.Image) {
		r, err := n.parseRef(s.Image)
		if err != nil {
			return "", nil, fmt.Errorf("%w: replica %s: image %q: %v", ErrInvalid, s.ID, s.Image, err)
		}
		nref = r
	}
	if len(p.Registries) > 0 && !registryAllowed(s.Image, nref, p.Registries) {
		return reject("RUNG-registry-allow-list: the image is not under %s", strings.Join(p.Registries, ", "))
	}
	if len(p.SignedBy) == 0 {
		return s.Image, nil, nil
	}
	if nref == nil {
		return reject("RUNG-image-signature: signature required: run images from a registry")
	}
	keys := make([]sign.Key, 0, len(p.SignedBy))
	for i, k := range p.SignedBy {
		key, err := sign.ParsePublicKey(fmt.Sprintf("signedBy[%d]", i), []byte(k))
		if err != nil {
			return reject("RUNG-image-signature: %v", err)
		}
		keys = append(keys, key)
	}
	ropts := []remote.Option{remote.WithContext(ctx)}
	if n.registry.Transport != nil {
		ropts = append(ropts, remote.WithTransport(n.registry.Transport))
	}
	if n.registry.Keychain != nil {
		ropts = append(ropts, remote.WithAuthFromKeychain(n.registry.Keychain))
	}
	res, err := sign.Verify(ctx, nref, keys, ropts...)
	if err != nil {
		if res.Digest == (name.Digest{}) { // the tag did not resolve
			return "", nil, fmt.Errorf("replica %s: image %s: %w", s.ID, s.Image, err)
		}
		return reject("RUNG-image-signature: %v", err)
	}
	pinned := res.Digest.Context().Name() + "@" + res.Digest.DigestStr()
	if _, _, err := n.images.Resolve(ctx, pinned); err != nil {
		popts := n.registry
		popts.Progress = nil
		if _, err := n.images.Pull(ctx, pinned, popts); err != nil {
			return "", nil, fmt.Errorf("replica %s: image %s: %w", s.ID, s.Image, err)
		}
	}
	n.log.Info("image signature verified", "replica", s.ID, "image", s.Image, "digest", pinned, "key", res.Key.Name)
	return pinned, &policy.Signature{Verified: true, Key: res.Key.Name}, nil
}

func (n *Node) parseRef(ref string) (name.Reference, error) {
	var nopts []name.Option
	if n.registry.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	return name.ParseReference(ref, nopts...)
}

// isRegistryRef mirrors the image store's rule: a first path component
// with a dot or a port, or localhost, names a registry host; oci-layout:
// and docker-archive: sources are local.
func isRegistryRef(s string) bool {
	if strings.HasPrefix(s, image.LayoutPrefix) || strings.HasPrefix(s, image.ArchivePrefix) {
		return false
	}
	host, _, ok := strings.Cut(s, "/")
	return ok && (strings.ContainsAny(host, ".:") || host == "localhost")
}

// registryAllowed is policy's rule: the reference, or its canonical
// repository followed by "/", starts with one of the prefixes.
func registryAllowed(ref string, nref name.Reference, prefixes []string) bool {
	for _, prefix := range prefixes {
		if strings.HasPrefix(ref, prefix) || nref != nil && strings.HasPrefix(nref.Context().Name()+"/", prefix) {
			return true
		}
	}
	return false
}

// searchable checks that every directory above the data directory lets
// other users through (o+x): runc and runsc open each replica's rootfs from
// inside the tenant's user namespace, as the tenant's UIDs, so a 0700
// parent makes every start fail with "permission denied".
// PrepareDir makes a node's data directory dir, and its replicas and
// runtimes directories, mode 0711, and checks that every directory above
// it lets other users through: the runtimes open bundles from inside
// tenants' user namespaces. It returns dir's absolute path. Open calls it;
// so does anything that runs a runtime in dir before Open (the sandbox
// network probe), since a data directory its caller just made is 0700.
func PrepareDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for _, d := range []string{abs, filepath.Join(abs, "replicas"), filepath.Join(abs, "runtimes")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return "", fmt.Errorf("data dir: %w", err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return "", fmt.Errorf("data dir: %w", err)
		}
	}
	return abs, searchable(abs)
}

func searchable(dir string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("data dir %s: %w", dir, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%w: data dir %s: %s (mode %04o) does not let other users through; "+
				"replicas run as their tenant's UIDs and must reach their rootfs (fix: chmod o+x %s, or use a --data-dir such as /var/lib/rung)",
				ErrInvalid, dir, p, fi.Mode().Perm(), p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// engine returns the admission engine for cfg: the built-in checks, plus
// the site's operator rules when cfg carries them (compiled once per
// distinct configuration).
func (n *Node) engine(cfg *policy.Config) (*policy.Engine, error) {
	if cfg == nil || (len(cfg.Rules) == 0 && cfg.MaxImageAge == 0) {
		return n.admission, nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.engines[string(b)]; ok {
		return e, nil
	}
	e, err := policy.New(*cfg)
	if err != nil {
		return nil, err
	}
	if len(n.engines) > 16 { // configurations change rarely; keep a few
		clear(n.engines)
	}
	n.engines[string(b)] = e
	return e, nil
}
