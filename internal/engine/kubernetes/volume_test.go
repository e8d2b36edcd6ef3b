package kubernetes_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "rung.dev/rung/api/v1"
	kube "rung.dev/rung/internal/engine/kubernetes"
	"rung.dev/rung/internal/scheduler"
)

// claimView is a PVC as the tests compare it.
type claimView struct {
	Node, Class, Size string
	Labels            map[string]string
}

func viewClaim(p *corev1.PersistentVolumeClaim) claimView {
	q := p.Spec.Resources.Requests[corev1.ResourceStorage]
	class := "<nil>"
	if p.Spec.StorageClassName != nil {
		class = *p.Spec.StorageClassName
	}
	return claimView{Node: p.Annotations[kube.AnnSelectedNode], Class: class, Size: q.String(), Labels: p.Labels}
}

// mounts are a pod's claims as "CLAIM at PATH (ro|rw)".
func mounts(p *corev1.Pod) []string {
	claims := map[string]string{}
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			claims[v.Name] = v.PersistentVolumeClaim.ClaimName
			if v.PersistentVolumeClaim.ReadOnly {
				claims[v.Name] += " (claim ro)"
			}
		}
	}
	var out []string
	for _, m := range p.Spec.Containers[0].VolumeMounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		out = append(out, fmt.Sprintf("%s at %s %s", claims[m.Name], m.MountPath, mode))
	}
	return out
}

func volume(tenant, name, size, uid string) v1.Volume {
	q := resource.MustParse(size)
	return v1.Volume{TypeMeta: v1.TypeMeta{APIVersion: "rung.dev/v1", Kind: v1.KindVolume}, Metadata: v1.ObjectMeta{Name: name, Tenant: tenant},
		Spec: v1.VolumeSpec{Size: &q}, Status: &v1.VolumeStatus{UID: uid}}
}

func claimLabels(tenant, vol, inst, uid string) map[string]string {
	return map[string]string{kube.LabelManagedBy: kube.ManagedBy, kube.LabelTenantOf: tenant,
		kube.LabelVolume: vol, kube.LabelVolumeInstance: inst, kube.LabelVolumeUID: uid}
}

// volumeSet: tenant bio's db (2 replicas) mounts its own pgdata-ORD
// read-write and the shared ref read-only.
func volumeSet() *v1.Set {
	two := 2
	w := workload("bio", "db", false)
	w.Spec.Replicas = &two
	w.Spec.Volumes = []v1.VolumeMount{
		{Name: "pgdata", MountPath: "/var/lib/pg", PerReplica: true},
		{Name: "ref", MountPath: "/ref", ReadOnly: true},
	}
	return &v1.Set{Tenants: []v1.Tenant{tenant("bio")}, Workloads: []v1.Workload{w},
		Volumes: []v1.Volume{volume("bio", "pgdata", "10Gi", "0123456789abcdef"), volume("bio", "ref", "1Gi", "fedcba9876543210")}}
}

func TestBuildVolumes(t *testing.T) {
	nodes := kube.Cluster{
		Hostnames: map[string]string{"n1": "n1", "n2": "n2"},
		Classes:   map[string]map[v1.Tier]string{"n1": {v1.TierContainer: "runc"}, "n2": {v1.TierContainer: "runc"}},
	}
	both := &scheduler.Result{Placements: []scheduler.Placement{
		{Workload: "bio/db", Replica: 0, Node: "n1", Tier: "container"},
		{Workload: "bio/db", Replica: 1, Node: "n1", Tier: "container"},
	}}
	pg := func(ord int, node string) claimView {
		inst := fmt.Sprintf("pgdata-%d", ord)
		return claimView{Node: node, Class: "local", Size: "10Gi", Labels: claimLabels("bio", "pgdata", inst, "0123456789abcdef")}
	}
	ref := func(node string) claimView {
		return claimView{Node: node, Class: "local", Size: "1Gi", Labels: claimLabels("bio", "ref", "ref", "fedcba9876543210")}
	}
	podMounts := func(ord int) []string {
		return []string{fmt.Sprintf("pgdata-%d-01234567 at /var/lib/pg rw", ord), "ref-fedcba98 (claim ro) at /ref ro"}
	}
	for _, tc := range []struct {
		name    string
		set     *v1.Set
		res     *scheduler.Result
		storage kube.Storage
		claims  []kube.Claim
		want    map[string]claimView // by claim name
		pods    map[string][]string  // replica → mounts
		refused []string
	}{{
		name:    "a claim per instance on the planned node, mounted as asked",
		set:     volumeSet(),
		res:     both,
		storage: kube.Storage{Class: "local"},
		want:    map[string]claimView{"pgdata-0-01234567": pg(0, "n1"), "pgdata-1-01234567": pg(1, "n1"), "ref-fedcba98": ref("n1")},
		pods:    map[string][]string{"0": podMounts(0), "1": podMounts(1)},
	}, {
		name: "a claim already on another node keeps its data there: the replica is refused",
		set:  volumeSet(),
		res:  both,
		claims: []kube.Claim{
			{Tenant: "bio", Volume: "pgdata", Instance: "pgdata-1", UID: "0123456789abcdef", Node: "n2", Class: "old"},
			{Tenant: "bio", Volume: "ref", Instance: "ref", UID: "fedcba9876543210", Node: "n1", Class: "local"},
		},
		storage: kube.Storage{Class: "local"},
		want:    map[string]claimView{"pgdata-0-01234567": pg(0, "n1"), "pgdata-1-01234567": {Node: "n2", Class: "old", Size: "10Gi", Labels: pg(1, "").Labels}, "ref-fedcba98": ref("n1")},
		pods:    map[string][]string{"0": podMounts(0)},
		refused: []string{"bio/db[1]: volume pgdata-1 is on node n2, the plan puts the replica on n1"},
	}, {
		name: "claims stay while their Volume exists, unused; a deleted or recreated Volume's go",
		set: func() *v1.Set {
			s := volumeSet()
			s.Workloads = nil
			s.Volumes[1].Status.UID = "1111111111111111" // ref deleted and made again
			return s
		}(),
		res: &scheduler.Result{},
		claims: []kube.Claim{
			{Tenant: "bio", Volume: "pgdata", Instance: "pgdata-0", UID: "0123456789abcdef", Node: "n1", Class: "local"},
			{Tenant: "bio", Volume: "ref", Instance: "ref", UID: "fedcba9876543210", Node: "n1", Class: "local"},
			{Tenant: "bio", Volume: "gone", Instance: "gone", UID: "2222222222222222", Node: "n1", Class: "local"},
		},
		want: map[string]claimView{"pgdata-0-01234567": pg(0, "n1")},
		pods: map[string][]string{},
	}, {
		name:    "no StorageClass that pins: refused, nothing made",
		set:     volumeSet(),
		res:     both,
		storage: kube.Storage{Problem: "StorageClass x binds Immediate"},
		want:    map[string]claimView{},
		pods:    map[string][]string{},
		refused: []string{"bio/db[0]: volume pgdata-0: no StorageClass rung can pin: StorageClass x binds Immediate", "bio/db[1]: volume pgdata-1: no StorageClass"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := nodes
			c.Claims, c.Storage = tc.claims, tc.storage
			d := kube.Build(tc.set, tc.res, c, kube.Options{})
			got := map[string]claimView{}
			pods := map[string][]string{}
			for _, o := range d.Objects {
				switch o := o.(type) {
				case *corev1.PersistentVolumeClaim:
					got[o.Name] = viewClaim(o)
					if o.Namespace != "rung-bio" || o.Spec.AccessModes[0] != corev1.ReadWriteOnce {
						t.Errorf("claim %s: namespace %s, access %v", o.Name, o.Namespace, o.Spec.AccessModes)
					}
					if cl, ok := kube.ClaimOf(o); !ok || cl.Node != got[o.Name].Node {
						t.Errorf("claim %s does not read back: %+v %v", o.Name, cl, ok)
					}
				case *corev1.Pod:
					pods[o.Labels[kube.LabelReplica]] = mounts(o)
					if g := o.Spec.SecurityContext.FSGroup; g == nil || *g != 65534 {
						t.Errorf("pod %s: fsGroup %v, want 65534 (the volume's files are the pod's group's)", o.Name, g)
					}
				}
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("claims (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.pods, pods); d != "" {
				t.Errorf("pod mounts (-want +got):\n%s", d)
			}
			sort.Strings(d.Refused)
			if len(d.Refused) != len(tc.refused) {
				t.Fatalf("refused %q, want %d", d.Refused, len(tc.refused))
			}
			for i, r := range tc.refused {
				if !strings.Contains(d.Refused[i], r) {
					t.Errorf("refused %q, want it to say %q", d.Refused[i], r)
				}
			}
		})
	}
}

func TestPickStorage(t *testing.T) {
	wffc, immediate := storagev1.VolumeBindingWaitForFirstConsumer, storagev1.VolumeBindingImmediate
	class := func(name, prov string, mode *storagev1.VolumeBindingMode, dflt bool) storagev1.StorageClass {
		c := storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: prov, VolumeBindingMode: mode}
		if dflt {
			c.Annotations = map[string]string{kube.AnnDefaultClass: "true"}
		}
		return c
	}
	classes := []storagev1.StorageClass{
		class("local-path", "rancher.io/local-path", &wffc, true),
		class("ebs", "ebs.csi.aws.com", &immediate, false),
		class("static", "kubernetes.io/no-provisioner", &wffc, false),
		class("unset", "topolvm.io", nil, false),
		class("topolvm", "topolvm.io", &wffc, false),
	}
	for _, tc := range []struct {
		classes   []storagev1.StorageClass
		want      string
		class     string
		problemIn string
	}{
		{classes, "", "local-path", ""},
		{classes, "topolvm", "topolvm", ""},
		{classes, "ebs", "", "binds Immediate"},
		{classes, "unset", "", "binds Immediate"}, // the API's default mode
		{classes, "static", "", "has no provisioner"},
		{classes, "nfs", "", "StorageClass nfs does not exist"},
		{classes[1:], "", "", "no default StorageClass"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			got := kube.PickStorage(tc.classes, tc.want)
			if got.Class != tc.class || !strings.Contains(got.Problem, tc.problemIn) || (tc.problemIn == "") != (got.Problem == "") {
				t.Errorf("PickStorage(%q) = %+v, want class %q, problem with %q", tc.want, got, tc.class, tc.problemIn)
			}
		})
	}
}
