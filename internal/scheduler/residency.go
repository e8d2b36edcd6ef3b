package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "rung.dev/rung/api/v1"
)

// Residency is a resolved data-residency limit (DESIGN §10): at Level, a
// node's domain must be one of Domains. A workload's are its tenant's,
// narrowed by its own (v1.EffectivePlacement).
type Residency struct {
	Level     int
	LevelName string
	Domains   []string
}

// VolumeUse is a volume a workload mounts, as placement sees it.
type VolumeUse struct {
	Name       string
	PerReplica bool
	// Missing is a volume no Volume object defines: the replicas wait.
	Missing bool
	// Restricted volumes make the workload's data restricted (rule 1).
	Restricted bool
	// Size in bytes, which a node's disk must have room for (disk.go).
	Size int64
}

// residency resolves w's effective placement limit; a level no topology
// has is an error naming it.
func (p *Problem) residency(t v1.Placement, w v1.Placement) ([]Residency, error) {
	eff := v1.EffectivePlacement(t, w)
	var out []Residency
	for _, l := range slices.Sorted(maps.Keys(eff.Domains)) {
		li, ok := p.Topology.Level(l)
		if !ok {
			return nil, fmt.Errorf("placement: unknown level %q", l)
		}
		out = append(out, Residency{Level: li, LevelName: l, Domains: slices.Sorted(slices.Values(eff.Domains[l]))})
	}
	return out, nil
}

// volumes resolves w's volume mounts against the set's Volumes of its
// tenant, and raises its data class to restricted when it mounts a
// restricted volume: rule 1 then keeps it off other tenants' hardware.
func volumeUses(set *v1.Set, w *v1.Workload) []VolumeUse {
	var out []VolumeUse
	for _, m := range w.Spec.Volumes {
		u := VolumeUse{Name: m.Name, PerReplica: m.PerReplica, Missing: true}
		for _, vol := range set.Volumes {
			if vol.Metadata.Tenant == w.Metadata.Tenant && vol.Metadata.Name == m.Name {
				u.Missing = false
				u.Restricted = vol.Spec.DataClass == v1.DataRestricted
				u.Size = vol.Spec.SizeBytes()
			}
		}
		out = append(out, u)
	}
	return out
}

// BindVolumes pins replicas to the nodes their volumes are bound to:
// bound maps TENANT/INSTANCE (a volume, or a perReplica instance NAME-ORD)
// to a node name. A binding to a node no topology has any more pins the
// replica nowhere: its data is there, and is never recreated empty
// elsewhere.
func (p *Problem) BindVolumes(bound map[string]string) {
	for wi := range p.Workloads {
		w := &p.Workloads[wi]
		if len(w.Volumes) == 0 {
			continue
		}
		w.Pinned = make([]Pin, w.Replicas)
		for ord := range w.Replicas {
			pin := Pin{Node: -1, Bound: make([]bool, len(w.Volumes))}
			for i, u := range w.Volumes {
				inst := u.Name
				if u.PerReplica {
					inst = fmt.Sprintf("%s-%d", u.Name, ord)
				}
				name, ok := bound[p.Tenants[w.Tenant].Name+"/"+inst]
				if !ok {
					continue
				}
				pin.Bound[i] = true
				n, ok := p.Topology.Node(name)
				if !ok {
					n = -2 // gone
				}
				switch {
				case pin.Node == -1:
					pin.Node, pin.NodeName, pin.Volume = n, name, inst
				case pin.Node != n:
					pin.Node, pin.NodeName, pin.Volume = -2, pin.NodeName+" and "+name, pin.Volume+" and "+inst
				}
			}
			w.Pinned[ord] = pin
		}
	}
}

// Pin is where a replica's volumes hold it: Node -1 is anywhere, -2
// nowhere (volumes on two nodes, or on a node that is gone).
type Pin struct {
	Node     int
	NodeName string
	Volume   string
	// Bound[i]: the replica's instance of the workload's volume i is
	// bound already (it takes no new disk).
	Bound []bool
}

// resident reports whether node n satisfies w's residency; when not, the
// index of the limit it breaks.
func (pl *planner) resident(w int32, n int) (int, bool) {
	for i, r := range pl.p.Workloads[w].Residency {
		if !slices.Contains(r.Domains, pl.top.DomainName(n, r.Level)) {
			return i, false
		}
	}
	return 0, true
}

// volumeOK reports whether node n holds (or may take) the volumes of
// replica ord of w.
func (pl *planner) volumeOK(w int32, ord int32, n int) bool {
	wl := &pl.p.Workloads[w]
	for _, u := range wl.Volumes {
		if u.Missing {
			return false
		}
	}
	if int(ord) >= len(wl.Pinned) {
		return true
	}
	pin := wl.Pinned[ord]
	return pin.Node == -1 || pin.Node == n
}

// describeVolume says why node n can't take replica ord of w.
func (pl *planner) describeVolume(w int32, ord int32, n int) string {
	wl := &pl.p.Workloads[w]
	for _, u := range wl.Volumes {
		if u.Missing {
			return fmt.Sprintf("volume %s does not exist (fix: apply a Volume named %s for tenant %s)", u.Name, u.Name, pl.p.Tenants[wl.Tenant].Name)
		}
	}
	pin := wl.Pinned[ord]
	if pin.Node == -2 {
		return fmt.Sprintf("volume %s is bound to node %s, which no topology has or which differ: its data is there and is never recreated empty (fix: bring the node back, or delete the volume)", pin.Volume, pin.NodeName)
	}
	return fmt.Sprintf("volume %s is on node %s, not %s", pin.Volume, pin.NodeName, pl.top.Nodes[n].Name)
}

// describeResidency says which limit node n breaks.
func (pl *planner) describeResidency(w int32, i, n int) string {
	r := pl.p.Workloads[w].Residency[i]
	d := pl.top.DomainName(n, r.Level)
	if d == "" {
		d = "none"
	}
	return fmt.Sprintf("%s=%s is outside the residency %s in [%s] (fix: widen spec.placement.domains.%s of the workload or tenant, or add nodes there)",
		r.LevelName, d, r.LevelName, strings.Join(r.Domains, ", "), r.LevelName)
}
