package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
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

// VolumeDeletion is a stored tombstone of a deleted volume.
type VolumeDeletion struct {
	Tenant    string    `json:"tenant"`
	Name      string    `json:"name"`
	UID       string    `json:"uid"`
	DeletedAt time.Time `json:"deletedAt"`
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
	tomb, err := json.Marshal(VolumeDeletion{Tenant: tenant, Name: name, UID: uid, DeletedAt: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	ops := []store.Op{g, store.PutOp(volumeDeletionsDir+"/"+tenant+"/"+name+"."+uid, tomb, store.Create)}
	binds, _, err := s.store.List(ctx, volumeBindingsDir+"/"+tenant)
	if err != nil {
		return nil, err
	}
	for _, b := range binds {
		inst := b.Key[strings.LastIndexByte(b.Key, '/')+1:]
		var vb VolumeBinding
		if json.Unmarshal(b.Data, &vb) == nil && vb.UID == uid && (inst == name || isInstanceOf(inst, name)) {
			ops = append(ops, store.DeleteOp(b.Key, b.Revision))
		}
	}
	return ops, nil
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

// VolumeDeletions lists the deleted volumes nodes must wipe.
func (s *Server) VolumeDeletions(ctx context.Context) ([]VolumeDeletion, error) {
	vals, _, err := s.store.List(ctx, volumeDeletionsDir)
	if err != nil {
		return nil, err
	}
	out := make([]VolumeDeletion, 0, len(vals))
	for _, v := range vals {
		var d VolumeDeletion
		if err := json.Unmarshal(v.Data, &d); err != nil {
			return nil, fmt.Errorf("decode %s: %w", v.Key, err)
		}
		out = append(out, d)
	}
	return out, nil
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

var _ = errors.Is
