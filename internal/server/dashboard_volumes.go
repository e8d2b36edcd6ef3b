package server

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server/wire"
)

// The dashboard's volumes page (/ui/volumes) and the residency facts of
// the workload page: built from the same plan and access rules as the
// other pages, so another tenant's volume never shows.

// volumesPage is the model of /ui/volumes.
type volumesPage struct {
	pageBase
	Tenants []volumeTenant
	More    int
}

// volumeTenant is one tenant's volumes and its residency.
type volumeTenant struct {
	Name      string
	Residency string
	Volumes   []volumeRow
}

// volumeRow is one volume instance: a Volume, or a perReplica instance
// NAME-ORD of it.
type volumeRow struct {
	Name      string
	Template  string // the Volume a perReplica instance is made from
	Size      string
	DataClass string
	// Node is where it is bound ("" not yet: on its first replica's
	// node); Gone, that no topology has that node any more.
	Node  string
	Gone  bool
	Users []volumeUser
}

// volumeUser is a replica that mounts a volume.
type volumeUser struct {
	ID, Workload, State, Mount string
	ReadOnly                   bool
}

func (s *Server) volumesPageHandler(ctx context.Context, w http.ResponseWriter, r *http.Request, base pageBase) error {
	v, err := s.look(ctx)
	if err != nil {
		return err
	}
	bound, err := s.volumeBindings(ctx)
	if err != nil {
		return err
	}
	base.Title = "Volumes"
	m := volumesPage{pageBase: base}
	rows := 0
	for _, tn := range v.tenants {
		vt := volumeTenant{Name: tn, Residency: residencyText(v1.EffectivePlacement(tenantPlacement(v.pl.set, tn), v1.Placement{}))}
		for _, r := range v.volumeRows(tn, bindingNodes(v.pl.set, bound)) {
			if rows == uiRows {
				m.More++
				continue
			}
			rows++
			vt.Volumes = append(vt.Volumes, r)
		}
		m.Tenants = append(m.Tenants, vt)
	}
	return s.render(w, http.StatusOK, "volumes", m)
}

// volumeRows lists tenant's volume instances, by name: each Volume, or
// the instances its perReplica mounts make (those of the workloads'
// replicas, and any bound before), with their binding and their users.
func (v *view) volumeRows(tenant string, bound map[string]string) []volumeRow {
	nodes := topologyNodes(v.pl.set)
	byInst := map[string]*volumeRow{}
	for _, vol := range v.pl.set.Volumes {
		if vol.Metadata.Tenant != tenant || !v.sees(tenant) {
			continue
		}
		name := vol.Metadata.Name
		row := func(inst string) *volumeRow {
			if r := byInst[inst]; r != nil {
				return r
			}
			r := &volumeRow{Name: inst, Size: "—", DataClass: string(vol.Spec.DataClass)}
			if inst != name {
				r.Template = name
			}
			if vol.Spec.Size != nil {
				r.Size = vol.Spec.Size.String()
			}
			if n, ok := bound[tenant+"/"+inst]; ok {
				r.Node, r.Gone = n, !nodes[n]
			}
			byInst[inst] = r
			return r
		}
		perReplica := false
		for _, w := range v.workloads {
			if w.Metadata.Tenant != tenant {
				continue
			}
			ref := tenant + "/" + w.Metadata.Name
			for _, mnt := range w.Spec.Volumes {
				if mnt.Name != name {
					continue
				}
				perReplica = perReplica || mnt.PerReplica
				replicas := 1
				if w.Spec.Replicas != nil {
					replicas = *w.Spec.Replicas
				}
				for ord := range replicas {
					r := row(v1.VolumeInstance(mnt, ord))
					u := volumeUser{ID: fmt.Sprintf("%s-%s-%d", tenant, w.Metadata.Name, ord), Workload: ref, State: "pending", Mount: mnt.MountPath, ReadOnly: mnt.ReadOnly}
					if rep, ok := v.replica(ref, ord); ok {
						u.ID, u.State = rep.ID, rep.State
					}
					r.Users = append(r.Users, u)
				}
			}
		}
		for key := range bound {
			if t, inst, _ := strings.Cut(key, "/"); t == tenant && (inst == name || isInstanceOf(inst, name)) {
				row(inst)
			}
		}
		if !perReplica {
			row(name)
		}
	}
	out := make([]volumeRow, 0, len(byInst))
	for _, k := range slices.Sorted(maps.Keys(byInst)) {
		out = append(out, *byInst[k])
	}
	return out
}

// replica finds replica ord of workload ref in the view.
func (v *view) replica(ref string, ord int) (wire.Replica, bool) {
	for _, r := range v.replicas {
		if r.Workload == ref && r.Index == ord {
			return r, true
		}
	}
	return wire.Replica{}, false
}

// tenantPlacement is tenant's residency ceiling.
func tenantPlacement(set *v1.Set, tenant string) v1.Placement {
	for _, t := range set.Tenants {
		if t.Metadata.Name == tenant {
			return t.Spec.Placement
		}
	}
	return v1.Placement{}
}

// residencyText is a placement in words: "region in [eu-west] · rack in
// [r1, r2]"; "" for none.
func residencyText(p v1.Placement) string {
	var parts []string
	for _, l := range slices.Sorted(maps.Keys(p.Domains)) {
		parts = append(parts, fmt.Sprintf("%s in [%s]", l, strings.Join(slices.Sorted(slices.Values(p.Domains[l])), ", ")))
	}
	return strings.Join(parts, " · ")
}

// workloadResidency is the residency facts of the workload page.
type workloadResidency struct {
	// Effective is where its replicas (and so its volumes) may go; Tenant
	// and Own the two limits it is made from.
	Effective, Tenant, Own string
	Volumes                []workloadVolume
}

// workloadVolume is one mount of the workload page.
type workloadVolume struct {
	Name, MountPath string
	ReadOnly        bool
	PerReplica      bool
}

func (v *view) residencyOf(w *v1.Workload) workloadResidency {
	t := tenantPlacement(v.pl.set, w.Metadata.Tenant)
	out := workloadResidency{
		Effective: residencyText(v1.EffectivePlacement(t, w.Spec.Placement)),
		Tenant:    residencyText(t), Own: residencyText(w.Spec.Placement),
	}
	for _, m := range w.Spec.Volumes {
		out.Volumes = append(out.Volumes, workloadVolume{Name: m.Name, MountPath: m.MountPath, ReadOnly: m.ReadOnly, PerReplica: m.PerReplica})
	}
	return out
}
