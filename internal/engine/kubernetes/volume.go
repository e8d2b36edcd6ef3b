package kubernetes

// Volumes on Kubernetes (DESIGN §10, §14): a PersistentVolumeClaim per
// volume instance, of a StorageClass that binds WaitForFirstConsumer, with
// the node rung planned written as the claim's selected node. rung pins
// pods with nodeName, so kube-scheduler's volume binding never runs for
// them: rung writes the annotation the scheduler would, and the class's
// provisioner makes the volume on that node (its PV carries the node
// affinity). Pure: the engine reads the live claims and the StorageClass.

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
)

// Volume labels and annotations.
const (
	LabelVolume         = "rung.dev/volume"
	LabelVolumeInstance = "rung.dev/volume-instance"
	LabelVolumeUID      = "rung.dev/volume-uid"
	// AnnSelectedNode is where kube-scheduler writes the node it picked
	// for a WaitForFirstConsumer claim; provisioners make the volume there.
	AnnSelectedNode = "volume.kubernetes.io/selected-node"
	// AnnDefaultClass marks the cluster's default StorageClass.
	AnnDefaultClass = "storageclass.kubernetes.io/is-default-class"
	// noProvisioner is static local PVs' provisioner: nothing makes the
	// volume a claim asks for on a node of rung's choosing.
	noProvisioner = "kubernetes.io/no-provisioner"
)

// ErrNoStorage: volumes can't be pinned to the planned node on this cluster.
var ErrNoStorage = errors.New("no StorageClass rung can pin")

// Storage is the StorageClass volumes get, as read off the cluster.
type Storage struct {
	// Class is the StorageClass new claims use ("" when none fits).
	Class string
	// Problem says why no class fits (with the fix).
	Problem string
}

// Claim is a volume claim rung made, as the cluster holds it.
type Claim struct {
	Tenant, Volume, Instance, UID string
	// Node is the claim's selected node: where its data is.
	Node string
	// Class is the claim's StorageClass.
	Class string
}

// ClaimName is the claim of a volume instance: INSTANCE, or INSTANCE-UID
// (the first 8 characters of the Volume's uid) so that a Volume deleted and
// made again under its name gets a new claim, never the old data.
func ClaimName(instance, uid string) string {
	if uid == "" {
		return instance
	}
	return instance + "-" + trim(uid, 8)
}

// volumes turns a plan's volume mounts into claims and pod volumes.
type volumes struct {
	c      Cluster
	byName map[string]*v1.Volume // TENANT/NAME
	claims map[string]*corev1.PersistentVolumeClaim
}

func newVolumes(set *v1.Set, c Cluster) *volumes {
	vs := &volumes{c: c, byName: map[string]*v1.Volume{}, claims: map[string]*corev1.PersistentVolumeClaim{}}
	for i := range set.Volumes {
		v := &set.Volumes[i]
		vs.byName[v.Metadata.Tenant+"/"+v.Metadata.Name] = v
	}
	// A claim whose Volume still exists stays, on its node, whether or not
	// a replica uses it now: its data is there (only deleting the Volume
	// deletes the claim).
	for _, cl := range c.Claims {
		v := vs.byName[cl.Tenant+"/"+cl.Volume]
		if v == nil || uidOf(v) != cl.UID {
			continue
		}
		k := Namespace(cl.Tenant) + "/" + ClaimName(cl.Instance, cl.UID)
		vs.claims[k] = claim(v, cl.Instance, cl.Node, cl.Class)
	}
	return vs
}

func uidOf(v *v1.Volume) string {
	if v.Status == nil {
		return ""
	}
	return v.Status.UID
}

// mount adds w's volumes to pod (replica p): a claim per instance, pinned
// to p's node; the pod mounts each at its path, read-only as asked. It
// refuses the replica when a claim's data is on another node or no
// StorageClass can pin it.
func (vs *volumes) mount(pod *corev1.Pod, w *v1.Workload, p scheduler.Placement) error {
	if len(w.Spec.Volumes) == 0 {
		return nil
	}
	tenant := w.Metadata.Tenant
	ns := Namespace(tenant)
	add := map[string]*corev1.PersistentVolumeClaim{}
	for i, m := range w.Spec.Volumes {
		v := vs.byName[tenant+"/"+m.Name]
		if v == nil {
			return fmt.Errorf("%s[%d]: volume %s does not exist (fix: apply a Volume named %s for tenant %s)", p.Workload, p.Replica, m.Name, m.Name, tenant)
		}
		inst := v1.VolumeInstance(m, p.Replica)
		name := ClaimName(inst, uidOf(v))
		k := ns + "/" + name
		if have := vs.claims[k]; have != nil {
			if node := have.Annotations[AnnSelectedNode]; node != p.Node {
				return fmt.Errorf("%s[%d]: volume %s is on node %s, the plan puts the replica on %s: its data stays there (fix: bring the node back, or delete the volume)", p.Workload, p.Replica, inst, node, p.Node)
			}
		} else if add[k] == nil {
			if vs.c.Storage.Class == "" {
				return fmt.Errorf("%s[%d]: volume %s: %w: %s", p.Workload, p.Replica, inst, ErrNoStorage, vs.c.Storage.Problem)
			}
			add[k] = claim(v, inst, p.Node, vs.c.Storage.Class)
		}
		vol := "vol-" + strconv.Itoa(i)
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name, ReadOnly: m.ReadOnly},
		}})
		c := &pod.Spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: m.MountPath, ReadOnly: m.ReadOnly})
	}
	// The volume's files belong to the pod's group: the pod runs as a
	// non-root user on a file system the provisioner made as root.
	gid := int64(nonRootUID)
	policy := corev1.FSGroupChangeOnRootMismatch
	pod.Spec.SecurityContext.FSGroup = &gid
	pod.Spec.SecurityContext.FSGroupChangePolicy = &policy
	maps.Copy(vs.claims, add)
	return nil
}

// objects are the claims, in name order.
func (vs *volumes) objects() []runtime.Object {
	var out []runtime.Object
	for _, k := range slices.Sorted(maps.Keys(vs.claims)) {
		out = append(out, vs.claims[k])
	}
	return out
}

// claim is the PVC of instance inst of v on node, of class.
func claim(v *v1.Volume, inst, node, class string) *corev1.PersistentVolumeClaim {
	tenant := v.Metadata.Tenant
	uid := uidOf(v)
	l := map[string]string{LabelVolume: v.Metadata.Name, LabelVolumeInstance: inst}
	if uid != "" {
		l[LabelVolumeUID] = uid
	}
	size := v.Spec.Size.DeepCopy()
	mode := corev1.PersistentVolumeFilesystem
	return &corev1.PersistentVolumeClaim{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{
			Name: ClaimName(inst, uid), Namespace: Namespace(tenant),
			Labels:      managed(tenant, l),
			Annotations: map[string]string{AnnSelectedNode: node},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			StorageClassName: &class,
			VolumeMode:       &mode,
		},
	}
}

// ClaimOf reads a claim rung made back (ok false for anything else, or
// one being deleted).
func ClaimOf(pvc *corev1.PersistentVolumeClaim) (Claim, bool) {
	l := pvc.Labels
	if l[LabelManagedBy] != ManagedBy || l[LabelVolume] == "" || l[LabelVolumeInstance] == "" || pvc.DeletionTimestamp != nil {
		return Claim{}, false
	}
	cl := Claim{Tenant: l[LabelTenantOf], Volume: l[LabelVolume], Instance: l[LabelVolumeInstance], UID: l[LabelVolumeUID], Node: pvc.Annotations[AnnSelectedNode]}
	if pvc.Spec.StorageClassName != nil {
		cl.Class = *pvc.Spec.StorageClassName
	}
	if cl.Node == "" || pvc.Namespace != Namespace(cl.Tenant) || pvc.Name != ClaimName(cl.Instance, cl.UID) {
		return Claim{}, false
	}
	return cl, true
}

// PickStorage picks the StorageClass new claims use: want ("" the
// cluster's default class). It must bind WaitForFirstConsumer and have a
// provisioner, or the node the data lands on is not the one rung planned
// (residency, and replicas pinned to their volume's node).
func PickStorage(classes []storagev1.StorageClass, want string) Storage {
	classes = slices.Clone(classes)
	slices.SortFunc(classes, func(a, b storagev1.StorageClass) int { return strings.Compare(a.Name, b.Name) })
	var c *storagev1.StorageClass
	for i := range classes {
		if want != "" && classes[i].Name == want || want == "" && classes[i].Annotations[AnnDefaultClass] == "true" {
			c = &classes[i]
			break
		}
	}
	switch {
	case c == nil && want != "":
		return Storage{Problem: fmt.Sprintf("StorageClass %s does not exist (fix: create it, or set rung's storage class option to one that does)", want)}
	case c == nil:
		return Storage{Problem: "the cluster has no default StorageClass (fix: mark a WaitForFirstConsumer class default, or set rung's storage class option)"}
	case c.VolumeBindingMode == nil || *c.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer:
		return Storage{Problem: fmt.Sprintf("StorageClass %s binds Immediate: its provisioner, not rung's plan, would pick where the data lives (fix: use a class with volumeBindingMode: WaitForFirstConsumer)", c.Name)}
	case c.Provisioner == noProvisioner:
		return Storage{Problem: fmt.Sprintf("StorageClass %s has no provisioner (static PVs): nothing makes a volume on the planned node (fix: a class of a dynamic provisioner with node topology: local-path, TopoLVM, OpenEBS LocalPV, a CSI driver)", c.Name)}
	}
	return Storage{Class: c.Name}
}
