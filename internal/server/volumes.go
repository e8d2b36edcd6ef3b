package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// Store layout of volumes (DESIGN §10).
const (
	volumesDir = "/volumes" // /volumes/TENANT/NAME: the Volume, with its uid in status
	// /volumebindings/TENANT/INSTANCE: the node a volume (or a perReplica
	// instance, NAME-ORD) was first used on; replicas that mount it go
	// there (scheduler's volume filter).
	volumeBindingsDir = "/volumebindings"
	// /volumedeletions/TENANT/NAME.UID: a deleted volume that nodes wipe
	// when they learn of it (their next reconcile).
	volumeDeletionsDir = "/volumedeletions"
)

// VolumeBinding is a stored binding of a volume instance to a node.
type VolumeBinding struct {
	Node string `json:"node"`
	UID  string `json:"uid"`
}

// admitVolume checks a Volume before it is stored: valid, of a tenant
// that exists, its size and data class unchanged by an update (the file
// system exists on a node already), and gives it its uid (kept across
// updates, new on creation).
func (s *Server) admitVolume(ctx context.Context, vol *v1.Volume, set *v1.Set, subj subject, cur store.Value, expect int64) ([]store.Op, error) {
	vol.Status = nil
	if vol.Spec.DataClass == "" {
		vol.Spec.DataClass = v1.DefaultDataClass
	}
	if err := validateOwn(set, subj); err != nil {
		return nil, err
	}
	if _, err := s.storedTenant(ctx, vol.Metadata.Tenant); err != nil {
		return nil, err
	}
	if expect == store.Create {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		vol.Status = &v1.VolumeStatus{UID: hex.EncodeToString(b[:])}
		return nil, nil
	}
	var old v1.Volume
	if err := json.Unmarshal(cur.Data, &old); err != nil {
		return nil, fmt.Errorf("decode stored volume: %w", err)
	}
	vol.Status = old.Status
	if old.Spec.SizeBytes() != vol.Spec.SizeBytes() {
		return nil, newError(http.StatusUnprocessableEntity, wire.CodeInvalid,
			"Volume %s: spec.size: %s can't change to %s: the file system exists (fix: create a new volume and copy the data)",
			subj.name, old.Spec.Size, vol.Spec.Size)
	}
	if old.Spec.DataClass != vol.Spec.DataClass {
		return nil, newError(http.StatusUnprocessableEntity, wire.CodeInvalid,
			"Volume %s: spec.dataClass: %s can't change to %s: the data is already there (fix: create a new volume)",
			subj.name, old.Spec.DataClass, vol.Spec.DataClass)
	}
	return nil, nil
}

// volumeDeleteOps refuses to delete a volume a workload still mounts and
// returns the ops that record its deletion for the nodes (which wipe it)
// and drop its bindings, with the tenant's guard, so that a workload
// applied meanwhile can't start mounting it.
func (s *Server) volumeDeleteOps(ctx context.Context, tenant, name string, cur store.Value) ([]store.Op, error) {
	var vol v1.Volume
	if err := json.Unmarshal(cur.Data, &vol); err != nil {
		return nil, fmt.Errorf("decode stored volume: %w", err)
	}
	wls, _, err := s.store.List(ctx, workloadsDir+"/"+tenant)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, v := range wls {
		var w v1.Workload
		if err := json.Unmarshal(v.Data, &w); err != nil {
			return nil, err
		}
		if slices.ContainsFunc(w.Spec.Volumes, func(m v1.VolumeMount) bool { return m.Name == name }) {
			users = append(users, w.Metadata.Name)
		}
	}
	if len(users) > 0 {
		return nil, newError(http.StatusConflict, wire.CodeConflict,
			"volume %s/%s is mounted by workload(s) %s; delete them or remove the volume from their spec.volumes first",
			tenant, name, strings.Join(head(users, 5), ", "))
	}
	uid := ""
	if vol.Status != nil {
		uid = vol.Status.UID
	}
	g, err := s.guardOp(ctx, tenant)
	if err != nil {
		return nil, err
	}
	ops := []store.Op{g}
	tomb := wire.VolumeDeletion{Tenant: tenant, Name: name, UID: uid, DeletedAt: time.Now().UTC()}
	binds, _, err := s.store.List(ctx, volumeBindingsDir+"/"+tenant)
	if err != nil {
		return nil, err
	}
	for _, b := range binds {
		inst := b.Key[strings.LastIndexByte(b.Key, '/')+1:]
		var vb VolumeBinding
		if json.Unmarshal(b.Data, &vb) == nil && vb.UID == uid && (inst == name || isInstanceOf(inst, name)) {
			ops = append(ops, store.DeleteOp(b.Key, b.Revision))
			tomb.Instances = append(tomb.Instances, inst)
			if !slices.Contains(tomb.Nodes, vb.Node) {
				tomb.Nodes = append(tomb.Nodes, vb.Node)
			}
		}
	}
	data, err := json.Marshal(tomb)
	if err != nil {
		return nil, err
	}
	return append(ops, store.PutOp(volumeDeletionsDir+"/"+tenant+"/"+name+"."+uid, data, store.Create)), nil
}

// isInstanceOf reports whether inst is a perReplica instance NAME-ORD of
// volume name.
func isInstanceOf(inst, name string) bool {
	ord, ok := strings.CutPrefix(inst, name+"-")
	if !ok || ord == "" {
		return false
	}
	for _, c := range ord {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// VolumeDeletions lists the deleted volumes node must wipe: those bound
// to it ("": every one, for rung up's own agent standing for every node).
// A node learns only of its own tenants' volume names.
func (s *Server) VolumeDeletions(ctx context.Context, node string) ([]wire.VolumeDeletion, error) {
	vals, _, err := s.store.List(ctx, volumeDeletionsDir)
	if err != nil {
		return nil, err
	}
	out := make([]wire.VolumeDeletion, 0, len(vals))
	for _, v := range vals {
		var d wire.VolumeDeletion
		if err := json.Unmarshal(v.Data, &d); err != nil {
			return nil, fmt.Errorf("decode %s: %w", v.Key, err)
		}
		if node == "" || slices.Contains(d.Nodes, node) {
			out = append(out, d)
		}
	}
	return out, nil
}

// nodeVolumeDeletions answers GET /v1/nodes/{name}/volumedeletions (node
// tokens, for their own node).
func (s *Server) nodeVolumeDeletions(w http.ResponseWriter, r *http.Request) error {
	name, err := s.nodeName(r, auth.Get)
	if err != nil {
		return err
	}
	ds, err := s.VolumeDeletions(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.VolumeDeletions{Node: name, Deletions: ds})
	return nil
}

// volumeBindings reads the stored bindings, by TENANT/INSTANCE.
func (s *Server) volumeBindings(ctx context.Context) (map[string]VolumeBinding, error) {
	return readBindings(ctx, s.store)
}

func readBindings(ctx context.Context, st store.Store) (map[string]VolumeBinding, error) {
	vals, _, err := st.List(ctx, volumeBindingsDir)
	if err != nil {
		return nil, err
	}
	out := make(map[string]VolumeBinding, len(vals))
	for _, v := range vals {
		var b VolumeBinding
		if err := json.Unmarshal(v.Data, &b); err != nil {
			return nil, fmt.Errorf("decode %s: %w", v.Key, err)
		}
		out[strings.TrimPrefix(v.Key, volumeBindingsDir+"/")] = b
	}
	return out, nil
}

// volumeUIDs maps TENANT/NAME of every Volume of set to its uid.
func volumeUIDs(set *v1.Set) map[string]string {
	out := map[string]string{}
	for _, vol := range set.Volumes {
		uid := ""
		if vol.Status != nil {
			uid = vol.Status.UID
		}
		out[vol.Metadata.Tenant+"/"+vol.Metadata.Name] = uid
	}
	return out
}

// bindingNodes is the scheduler's view of the bindings: TENANT/INSTANCE →
// node, for the volumes that exist now (a binding of an earlier volume of
// the same name is not this one's).
func bindingNodes(set *v1.Set, bound map[string]VolumeBinding) map[string]string {
	uids := volumeUIDs(set)
	out := map[string]string{}
	for key, b := range bound {
		tenant, inst, _ := strings.Cut(key, "/")
		for id, uid := range uids {
			t, name, _ := strings.Cut(id, "/")
			if t == tenant && uid == b.UID && (inst == name || isInstanceOf(inst, name)) {
				out[key] = b.Node
			}
		}
	}
	return out
}

// saveBindings binds every volume instance a placed replica mounts and
// that is not bound yet to that replica's node: its first use.
func (p *planner) saveBindings(ctx context.Context, res *scheduler.Result, set *v1.Set, bound map[string]VolumeBinding) error {
	uids := volumeUIDs(set)
	wls := map[string]*v1.Workload{}
	for i := range set.Workloads {
		w := &set.Workloads[i]
		wls[w.Metadata.Tenant+"/"+w.Metadata.Name] = w
	}
	var ops []store.Op
	for _, pl := range res.Placements {
		w := wls[pl.Workload]
		if w == nil {
			continue
		}
		for _, m := range w.Spec.Volumes {
			uid, ok := uids[w.Metadata.Tenant+"/"+m.Name]
			if !ok {
				continue
			}
			key := w.Metadata.Tenant + "/" + v1.VolumeInstance(m, pl.Replica)
			if b, ok := bound[key]; ok && b.UID == uid {
				continue
			}
			data, err := json.Marshal(VolumeBinding{Node: pl.Node, UID: uid})
			if err != nil {
				return err
			}
			if _, ok := bound[key]; ok { // an earlier volume's binding
				ops = append(ops, store.PutOp(volumeBindingsDir+"/"+key, data, store.Any))
			} else {
				ops = append(ops, store.PutOp(volumeBindingsDir+"/"+key, data, store.Create))
			}
			bound[key] = VolumeBinding{Node: pl.Node, UID: uid}
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		if _, err := p.store.Txn(ctx, ops[:n]...); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}
