package v1

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// KindVolume is a tenant's persistent file system (DESIGN §10): its data
// outlives replicas, workloads and restarts; only deleting the Volume
// removes (and wipes) it.
const KindVolume = "Volume"

// Limits of a Volume.
const (
	// MinVolumeSize is the smallest volume: an ext4 file system needs room
	// for its journal and metadata.
	MinVolumeSize = 16 << 20
	// MaxVolumeSize bounds one volume (16 TiB, ext4's limit with 4 KiB
	// blocks).
	MaxVolumeSize = 16 << 40
	// MaxVolumeMounts is the most volumes one workload mounts.
	MaxVolumeMounts = 16
)

// Volume is a tenant's named file system of a fixed size. It binds to a
// node on first use; replicas that mount it are placed there.
type Volume struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     VolumeSpec `json:"spec"`
	// Status is the control plane's: set when stored, ignored when applied.
	Status *VolumeStatus `json:"status,omitempty"`
}

// VolumeStatus is what the control plane keeps about a volume.
type VolumeStatus struct {
	// UID tells this volume from an earlier one of the same name: a node
	// never hands an old one's data to it.
	UID string `json:"uid,omitempty"`
}

// VolumeSpec is the volume's size and the class of data it holds.
type VolumeSpec struct {
	// Size is enforced by the kernel: writing past it fails with ENOSPC.
	Size *resource.Quantity `json:"size"`
	// DataClass of the data kept (default internal). A restricted volume
	// is only mounted by its own tenant's replicas on hosts of their own
	// (rule 1's isolation).
	DataClass DataClass `json:"dataClass,omitempty"`
}

// SizeBytes is the volume's size in bytes (0 when unset).
func (v *VolumeSpec) SizeBytes() int64 {
	if v.Size == nil {
		return 0
	}
	return v.Size.Value()
}

// VolumeMount mounts a Volume of the workload's tenant in its replicas.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	// PerReplica gives each replica its own volume, made from the named
	// Volume as a template (Kubernetes' volumeClaimTemplates): replica i
	// mounts "NAME-i" of the Volume's size and data class.
	PerReplica bool `json:"perReplica,omitempty"`
}

// Placement limits where replicas and volumes may go (data residency).
type Placement struct {
	// Domains maps a level to the domains allowed at it, e.g. {region:
	// [eu-west]}. A node is allowed when, for every level named, its
	// domain at that level is listed. A Tenant's domains are a ceiling its
	// workloads can only narrow.
	Domains map[string][]string `json:"domains,omitempty"`
}

// IsZero reports an empty placement (no limit).
func (p Placement) IsZero() bool { return len(p.Domains) == 0 }

// VolumeInstance names the volume replica ord mounts for m: the Volume
// itself, or its own "NAME-ORD" when m is per replica.
func VolumeInstance(m VolumeMount, ord int) string {
	if m.PerReplica {
		return m.Name + "-" + strconv.Itoa(ord)
	}
	return m.Name
}

// Validate checks a Volume on its own. Every problem is a *FieldError.
func (vol *Volume) Validate() error {
	v := &validator{s: &Set{}}
	v.volume(object{kind: KindVolume, name: displayName(vol.Metadata.Tenant + "/" + vol.Metadata.Name)}, vol)
	return joinFieldErrors(v.errs)
}

// volume checks one Volume (Set.Validate calls it with positions).
func (v *validator) volume(o object, vol *Volume) {
	v.tenantObject(o, vol.TypeMeta, KindVolume, vol.Metadata, "pgdata")
	switch s := vol.Spec.Size; {
	case s == nil:
		v.fail(o, "spec.size", "missing", "set the size, e.g. size: 10Gi")
	case s.Value() < MinVolumeSize:
		v.fail(o, "spec.size", fmt.Sprintf("%s is smaller than 16Mi", s.String()), "use at least 16Mi")
	case s.Value() > MaxVolumeSize:
		v.fail(o, "spec.size", fmt.Sprintf("%s is larger than 16Ti", s.String()), "use at most 16Ti, or several volumes")
	}
	v.enum(o, "spec.dataClass", string(vol.Spec.DataClass), "data class",
		[]string{string(DataPublic), string(DataInternal), string(DataConfidential), string(DataRestricted)})
}

// workloadVolumes checks a workload's spec.volumes: names, mount paths
// outside what the runtime owns, and no volume written by two replicas.
func (v *validator) workloadVolumes(o object, w *WorkloadSpec) {
	if len(w.Volumes) > MaxVolumeMounts {
		// Each mount is checked against every other: past the limit,
		// checking them would cost a hostile list quadratic time.
		v.fail(o, "spec.volumes", fmt.Sprintf("%d volumes, more than %d", len(w.Volumes), MaxVolumeMounts), "mount fewer volumes")
		return
	}
	paths := map[string]bool{}
	for _, m := range w.Secrets {
		paths[path.Clean(m.MountPath)] = true
	}
	names := map[string]bool{}
	replicas := DefaultReplicas
	if w.Replicas != nil {
		replicas = *w.Replicas
	}
	for i, m := range w.Volumes {
		p := index("spec.volumes", i)
		v.dnsLabel(o, join(p, "name"), m.Name, "pgdata")
		if problem := volumePathProblem(m.MountPath); problem != "" {
			v.fail(o, join(p, "mountPath"), fmt.Sprintf("%q is %s", truncate(m.MountPath), problem),
				"mount volumes at a path of their own such as /data or /var/lib/postgresql")
		} else if paths[m.MountPath] || slices.ContainsFunc(slices.Collect(maps.Keys(paths)), func(q string) bool {
			return strings.HasPrefix(m.MountPath, q+"/") || strings.HasPrefix(q, m.MountPath+"/")
		}) {
			v.fail(o, join(p, "mountPath"), fmt.Sprintf("%s overlaps another volume's or secret's path", m.MountPath), "give each volume a path of its own")
		}
		paths[m.MountPath] = true
		if names[m.Name] {
			v.fail(o, join(p, "name"), fmt.Sprintf("volume %s is mounted twice", m.Name), "mount each volume once")
		}
		names[m.Name] = true
		if replicas > 1 && !m.PerReplica && !m.ReadOnly {
			v.fail(o, join(p, "readOnly"), fmt.Sprintf("volume %s would be mounted read-write by %d replicas", m.Name, replicas),
				"set perReplica: true (each replica gets its own volume), readOnly: true, or replicas: 1")
		}
	}
}

// volumePathProblem mirrors the node's rule (internal/bundle): "" when p can
// take a volume.
func volumePathProblem(p string) string {
	switch {
	case !strings.HasPrefix(p, "/") || path.Clean(p) != p:
		return "not a clean absolute path"
	case p == "/":
		return "the root itself"
	case p == "/tmp":
		return "the replica's own tmpfs"
	}
	for _, d := range []string{"/proc", "/dev", "/sys"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "inside " + d + ", which the runtime owns"
		}
	}
	return ""
}

// placement checks a spec.placement: known levels, at least one domain
// each, no empty names.
func (v *validator) placement(o object, p Placement) {
	for _, level := range slices.Sorted(maps.Keys(p.Domains)) {
		lp := join("spec.placement.domains", level)
		v.level(o, lp, level)
		vals := p.Domains[level]
		if len(vals) == 0 {
			v.fail(o, lp, "no domain listed: nothing could be placed", "list the allowed domains, e.g. [eu-west], or remove the level")
		}
		for i, d := range vals {
			if strings.TrimSpace(d) == "" {
				v.fail(o, index(lp, i), "empty", "name a domain of this level")
			}
		}
	}
}

// narrower checks that a workload's residency stays inside its tenant's:
// at a level both name, every domain of the workload's must be the
// tenant's too.
func (v *validator) narrower(o object, w Placement, tenant string, t Placement) {
	for _, level := range slices.Sorted(maps.Keys(w.Domains)) {
		allowed, ok := t.Domains[level]
		if !ok {
			continue
		}
		for i, d := range w.Domains[level] {
			if !slices.Contains(allowed, d) {
				v.fail(o, index(join("spec.placement.domains", level), i),
					fmt.Sprintf("%s=%s is outside tenant %s's residency (%s)", level, d, tenant, strings.Join(allowed, ", ")),
					"a workload can only narrow its tenant's spec.placement: pick from the tenant's domains")
			}
		}
	}
}

// EffectivePlacement is where a workload of tenant t may go: the
// tenant's limit, narrowed by the workload's own at each level it names.
func EffectivePlacement(t, w Placement) Placement {
	if t.IsZero() && w.IsZero() {
		return Placement{}
	}
	out := Placement{Domains: map[string][]string{}}
	for l, ds := range t.Domains {
		out.Domains[l] = slices.Clone(ds)
	}
	for l, ds := range w.Domains {
		if allowed, ok := out.Domains[l]; ok {
			out.Domains[l] = slices.DeleteFunc(slices.Clone(ds), func(d string) bool { return !slices.Contains(allowed, d) })
		} else {
			out.Domains[l] = slices.Clone(ds)
		}
	}
	return out
}

// sharedVolumes refuses one volume mounted read-write by two workloads of
// a tenant (its file system is mounted by one replica at a time).
func (v *validator) sharedVolumes(workloads []object) {
	writer := map[string]string{} // tenant/volume → workload
	for i := range v.s.Workloads {
		w := &v.s.Workloads[i]
		for j, m := range w.Spec.Volumes {
			if m.ReadOnly || m.PerReplica {
				continue
			}
			id := w.Metadata.Tenant + "/" + m.Name
			if other, ok := writer[id]; ok && other != w.Metadata.Name {
				v.fail(workloads[i], join(index("spec.volumes", j), "readOnly"),
					fmt.Sprintf("volume %s is mounted read-write by workload %s too", m.Name, other),
					"mount it readOnly: true here, or give each workload a volume of its own")
				continue
			}
			writer[id] = w.Metadata.Name
		}
	}
}

// tenantObject checks the header of a tenant's object of kind (Secret,
// Volume): apiVersion, kind, names and labels.
func (v *validator) tenantObject(o object, tm TypeMeta, kind string, m ObjectMeta, example string) {
	if tm.APIVersion != APIVersion {
		v.fail(o, "apiVersion", fmt.Sprintf("%q is not supported", truncate(tm.APIVersion)), "use apiVersion: "+APIVersion)
	}
	if tm.Kind != kind {
		v.fail(o, "kind", fmt.Sprintf("%q is not a %s", truncate(tm.Kind), kind), "use kind: "+kind)
	}
	v.dnsLabel(o, "metadata.name", m.Name, example)
	if m.Tenant == "" {
		v.fail(o, "metadata.tenant", fmt.Sprintf("missing: every %s belongs to a tenant", strings.ToLower(kind)), "set metadata.tenant to the name of its Tenant")
	} else {
		v.dnsLabel(o, "metadata.tenant", m.Tenant, "biology")
	}
	v.labels(o, "metadata.labels", m.Labels)
}
