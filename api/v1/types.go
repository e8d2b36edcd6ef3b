// Package v1 holds the rung.dev/v1 manifest types (Topology, Tenant,
// Workload, Policy), their strict decoding and their validation.
//
// These are the user-facing contract of DESIGN.md §4; the engine converts
// them into its own compact model and never reads them directly.
package v1

import "k8s.io/apimachinery/pkg/api/resource"

// APIVersion is the only apiVersion rung accepts.
const APIVersion = "rung.dev/v1"

// Kinds of manifest documents.
const (
	KindTopology = "Topology"
	KindTenant   = "Tenant"
	KindWorkload = "Workload"
	KindPolicy   = "Policy"
)

// Tier is a rung on the tenancy scale, as written in manifests.
type Tier string

// The tiers, weakest first.
const (
	TierContainer Tier = "container"
	TierSandbox   Tier = "sandbox"
	TierVM        Tier = "vm"
	TierHost      Tier = "host"
)

// Tiers lists every tier, weakest first.
var Tiers = []Tier{TierContainer, TierSandbox, TierVM, TierHost}

// Trust says whether a tenant's code is vetted.
type Trust string

// Trust values.
const (
	TrustTrusted   Trust = "trusted"
	TrustUntrusted Trust = "untrusted"
)

// DataClass is the sensitivity of the data a workload handles.
type DataClass string

// Data classes, least sensitive first.
const (
	DataPublic       DataClass = "public"
	DataInternal     DataClass = "internal"
	DataConfidential DataClass = "confidential"
	DataRestricted   DataClass = "restricted"
)

// Privilege is whether a workload may get an allow-listed capability.
type Privilege string

// Privilege levels.
const (
	PrivilegeStandard Privilege = "standard"
	PrivilegeElevated Privilege = "elevated"
)

// TypeMeta names the schema of a document.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ObjectMeta names an object. Tenant is set on tenant-scoped kinds (Workload).
type ObjectMeta struct {
	Name   string            `json:"name"`
	Tenant string            `json:"tenant,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Resources is an amount of CPU, memory and PIDs, as Kubernetes quantities.
// In a workload they are requests: what placement counts and the replica
// is guaranteed (CPU weight, memory low/soft limit).
type Resources struct {
	CPU    *resource.Quantity `json:"cpu,omitempty"`
	Memory *resource.Quantity `json:"memory,omitempty"`
	PIDs   int64              `json:"pids,omitempty"`
	// Limits (workloads only) let a replica burst above its requests up to
	// them (Kubernetes "burstable"); without them the requests are hard
	// limits. PIDs have no burst.
	Limits *Limits `json:"limits,omitempty"`
}

// Limits cap a workload's burst above its requests.
type Limits struct {
	CPU    *resource.Quantity `json:"cpu,omitempty"`
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// Isolation is a floor on the tier.
type Isolation struct {
	Minimum Tier `json:"minimum,omitempty"`
}

// Topology describes the nodes and the failure domains they belong to.
type Topology struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta   `json:"metadata"`
	Spec     TopologySpec `json:"spec"`
}

// TopologySpec lists extra levels and the nodes.
type TopologySpec struct {
	// Levels are operator-defined levels added to the built-in ones.
	Levels []string `json:"levels,omitempty"`
	Nodes  []Node   `json:"nodes"`
	// Network is the pool replicas' addresses come from (DESIGN §9); nil
	// leaves replicas with a loopback-only network namespace.
	Network *TopologyNetwork `json:"network,omitempty"`
}

// Node is a physical host, or a VM node when Host is set.
type Node struct {
	Name string `json:"name"`
	// Host names the physical node this VM node runs on; it inherits its domains.
	Host string `json:"host,omitempty"`
	// Tenant restricts a VM node to one tenant.
	Tenant   string            `json:"tenant,omitempty"`
	Domains  map[string]string `json:"domains,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Capacity Resources         `json:"capacity"`
	// Runtimes are the tiers the node can run; nil means the default.
	Runtimes []Tier `json:"runtimes,omitempty"`
}

// Tenant is a customer, research group or team.
type Tenant struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     TenantSpec `json:"spec"`
}

// TenantSpec is who the tenant is and what it may do.
type TenantSpec struct {
	Organization string      `json:"organization,omitempty"`
	Trust        Trust       `json:"trust,omitempty"`
	Dedicated    bool        `json:"dedicated,omitempty"`
	Isolation    Isolation   `json:"isolation,omitempty"`
	Quota        Quota       `json:"quota,omitempty"`
	Images       ImagePolicy `json:"images,omitempty"`
	// Placement is the tenant's data residency: a ceiling on where its
	// replicas and volumes go, which its workloads can only narrow.
	Placement Placement `json:"placement,omitzero"`
}

// Quota caps what a tenant may request in total.
type Quota struct {
	CPU      *resource.Quantity `json:"cpu,omitempty"`
	Memory   *resource.Quantity `json:"memory,omitempty"`
	Replicas int                `json:"replicas,omitempty"`
}

// ImagePolicy restricts where a tenant's images come from and who signed them.
type ImagePolicy struct {
	Registries []string `json:"registries,omitempty"`
	SignedBy   []string `json:"signedBy,omitempty"`
	// BlockSeverity is the vulnerability severity at and above which the
	// tenant's images are rejected: low, medium, high or critical; empty
	// means DefaultBlockSeverity (high).
	BlockSeverity string `json:"blockSeverity,omitempty"`
}

// Workload is a replicated program of one tenant.
type Workload struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta   `json:"metadata"`
	Spec     WorkloadSpec `json:"spec"`
}

// WorkloadSpec is what to run, how much of it, and where.
type WorkloadSpec struct {
	Image     string            `json:"image,omitempty"`
	Command   []string          `json:"command,omitempty"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Replicas  *int              `json:"replicas,omitempty"`
	Resources Resources         `json:"resources,omitempty"`
	DataClass DataClass         `json:"dataClass,omitempty"`
	Privilege Privilege         `json:"privilege,omitempty"`
	// Capabilities are requested by elevated workloads, from the allow-list.
	Capabilities []string   `json:"capabilities,omitempty"`
	Isolation    Isolation  `json:"isolation,omitempty"`
	Dedicated    bool       `json:"dedicated,omitempty"`
	Spread       []Spread   `json:"spread,omitempty"`
	Affinity     []Affinity `json:"affinity,omitempty"`
	// RestartPolicy says when a stopped replica is started again: Always
	// (default), OnFailure (a non-zero exit) or Never. Restarts back off
	// exponentially up to a cap (DESIGN §8).
	RestartPolicy RestartPolicy `json:"restartPolicy,omitempty"`
	// Healthcheck overrides the image's HEALTHCHECK; the agent runs it
	// inside the replica with the replica's own hardening.
	Healthcheck *Healthcheck `json:"healthcheck,omitempty"`
	// Rollout bounds how a changed workload replaces its replicas.
	Rollout Rollout `json:"rollout,omitzero"`
	// Secrets are the tenant's Secrets the replicas get as read-only files
	// (one per key, mode 0400) on a tmpfs at each mountPath.
	Secrets []SecretMount `json:"secrets,omitempty"`
	// Ports are what the replicas serve (DESIGN §9): reachable by the same
	// tenant always, by allowTenants' replicas, and on a node port when
	// published.
	Ports []Port `json:"ports,omitempty"`
	// Egress lets replicas reach addresses beyond the tenant network; it
	// needs the site Policy's consent (spec.network.egressTenants).
	Egress bool `json:"egress,omitempty"`
	// Volumes are the tenant's Volumes the replicas mount (volume.go).
	Volumes []VolumeMount `json:"volumes,omitempty"`
	// Placement narrows the tenant's data residency for this workload.
	Placement Placement `json:"placement,omitzero"`
}

// SecretMount names a Secret of the workload's tenant and where its keys
// appear as files.
type SecretMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

// RestartPolicy is a workload's spec.restartPolicy.
type RestartPolicy string

// Restart policies, as in Kubernetes.
const (
	RestartAlways    RestartPolicy = "Always"
	RestartOnFailure RestartPolicy = "OnFailure"
	RestartNever     RestartPolicy = "Never"
)

// Healthcheck is a command run inside the replica: exit 0 is healthy.
// Durations are Go durations ("10s", "1m30s").
type Healthcheck struct {
	Command []string `json:"command"`
	// Interval between checks (default 30s), Timeout of one check (default
	// 30s; a check still running then is killed and counts as failed).
	Interval string `json:"interval,omitempty"`
	Timeout  string `json:"timeout,omitempty"`
	// Retries is how many failures in a row make the replica unhealthy
	// (default 3).
	Retries int `json:"retries,omitempty"`
	// StartPeriod is how long after a start failures don't count (default 0).
	StartPeriod string `json:"startPeriod,omitempty"`
}

// Rollout bounds a rollout, as a Kubernetes Deployment's RollingUpdate:
// at most MaxUnavailable replicas fewer than spec.replicas are ready, and
// at most MaxSurge more exist, at every step. Defaults 0 and 1.
type Rollout struct {
	MaxUnavailable *int `json:"maxUnavailable,omitempty"`
	MaxSurge       *int `json:"maxSurge,omitempty"`
}

// Spread asks for replicas to be spread over the domains of one level.
type Spread struct {
	Level string `json:"level"`
	// MinDomains is the least number of distinct domains the replicas use.
	MinDomains int `json:"minDomains,omitempty"`
	// MaxPerDomain caps the replicas in any one domain.
	MaxPerDomain int  `json:"maxPerDomain,omitempty"`
	Soft         bool `json:"soft,omitempty"`
}

// Affinity is a Triton-style rule relative to other replicas: exactly one of
// Workload, Tenant or Label ("key=value") selects them.
type Affinity struct {
	Workload string `json:"workload,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
	Label    string `json:"label,omitempty"`
	// Op is "==" (same domain) or "!=" (different domain).
	Op    string `json:"op"`
	Level string `json:"level"`
	Soft  bool   `json:"soft,omitempty"`
}

// Policy is the operator's site policy.
type Policy struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     PolicySpec `json:"spec"`
}

// PolicySpec holds CEL tenancy rules and tier overheads.
type PolicySpec struct {
	// Rules are evaluated before the default table; the first match wins.
	Rules []Rule `json:"rules,omitempty"`
	// TierOverhead replaces the default per-replica overhead of a tier.
	TierOverhead map[Tier]Resources `json:"tierOverhead,omitempty"`
	// Admission adds operator checks to the built-in admission checks
	// (DESIGN §6); it can add and tighten, never remove.
	Admission Admission `json:"admission,omitzero"`
	// Network is the site's consent to what tenant networks may do beyond
	// the default (DESIGN §9).
	Network PolicyNetwork `json:"network,omitzero"`
	// Noisy is the noisy-neighbour ladder (DESIGN §12); nil: usage is
	// reported, nothing acts.
	Noisy *NoisyPolicy `json:"noisy,omitempty"`
}

// NoisyPolicy says when a replica is a noisy neighbour and what is done.
type NoisyPolicy struct {
	// Threshold is the starvation threshold in percent (1–99): a
	// neighbour whose CPU pressure or throttling is above it is starved.
	Threshold int `json:"threshold"`
	// Actions is the ladder, taken in order: throttle, report, move.
	Actions []string `json:"actions"`
	// Interval is how often nodes sample usage, a Go duration (default 2s).
	Interval string `json:"interval,omitempty"`
	// Hold is how many samples in a row make a step (default 2).
	Hold int `json:"hold,omitempty"`
	// Calm is how many calm samples give a throttled replica its burst
	// back (default 15).
	Calm int `json:"calm,omitempty"`
}

// Admission is the operator's admission configuration in a Policy.
type Admission struct {
	// Rules are CEL admission rules, evaluated after the built-in checks.
	Rules []AdmissionRule `json:"rules,omitempty"`
	// MaxImageAge is the oldest image admitted, a Go duration ("720h");
	// empty means the default (365 days).
	MaxImageAge string `json:"maxImageAge,omitempty"`
}

// AdmissionRule is one operator admission rule: when Deny evaluates to
// true, the workload or image is rejected with a finding naming ID.
type AdmissionRule struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Severity is low, medium, high or critical; empty means medium.
	Severity string `json:"severity,omitempty"`
	Fix      string `json:"fix,omitempty"`
	// On is "workload" (the default) or "image".
	On string `json:"on,omitempty"`
	// Deny is a CEL expression over tenant and workload (or image).
	Deny string `json:"deny"`
}

// Rule is one operator tenancy rule.
type Rule struct {
	Name string `json:"name"`
	// When is a CEL expression over `attacker` and `victim`.
	When    string `json:"when"`
	Require Tier   `json:"require"`
}

// Built-in failure-domain levels. Nested ones are ordered outermost first.
var (
	NestedLevels     = []string{"region", "datacenter", "room", "rack", "host", "vm"}
	OrthogonalLevels = []string{"pdu", "switch", "weather", "seismic"}
)
