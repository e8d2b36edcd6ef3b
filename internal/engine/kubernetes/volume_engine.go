package kubernetes

// The engine's side of networks and volumes: informers on the Services
// and claims rung makes (drift is put back and stale ones pruned like
// pods), and what Build needs read off the cluster (live claims, the
// StorageClass).

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	v1 "rung.dev/rung/api/v1"
)

// watchServicesAndClaims registers the listers and informers of Services
// and PersistentVolumeClaims rung made (New calls it before the informers
// start).
func (e *Engine) watchServicesAndClaims(o informers.SharedInformerFactory, informersOf map[string]cache.SharedIndexInformer) {
	e.listers["Service"] = func(ns, n string) (runtime.Object, error) {
		return o.Core().V1().Services().Lister().Services(ns).Get(n)
	}
	e.listers["PersistentVolumeClaim"] = func(ns, n string) (runtime.Object, error) {
		return o.Core().V1().PersistentVolumeClaims().Lister().PersistentVolumeClaims(ns).Get(n)
	}
	informersOf["Service"] = o.Core().V1().Services().Informer()
	informersOf["PersistentVolumeClaim"] = o.Core().V1().PersistentVolumeClaims().Informer()
}

// pruneServicesAndClaims lists the Services and claims rung made for
// prune (which deletes those no longer wanted: a claim when its Volume is
// deleted).
func (e *Engine) pruneServicesAndClaims(sel labels.Selector, add func(kind string, objs []metav1.Object)) {
	svcs, _ := e.own.Core().V1().Services().Lister().List(sel)
	add("Service", metas(svcs))
	pvcs, _ := e.own.Core().V1().PersistentVolumeClaims().Lister().List(sel)
	add("PersistentVolumeClaim", metas(pvcs))
}

// readVolumes fills in c what Build needs for set's volumes: the claims
// rung made (from the informer) and the StorageClass new ones get. An
// error is a cluster that could not be asked: apply later, rather than
// build without the volumes (which would prune their pods).
func (e *Engine) readVolumes(ctx context.Context, set *v1.Set, c *Cluster) error {
	c.Claims, c.Storage = nil, Storage{}
	if len(set.Volumes) == 0 {
		return nil
	}
	pvcs, err := e.own.Core().V1().PersistentVolumeClaims().Lister().List(labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy}))
	if err != nil {
		return fmt.Errorf("kubernetes: list claims: %w", err)
	}
	for _, p := range pvcs {
		if cl, ok := ClaimOf(p); ok {
			c.Claims = append(c.Claims, cl)
		}
	}
	l, err := e.Client.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsForbidden(err):
		c.Storage.Problem = fmt.Sprintf("%v: the kubeconfig's user cannot list storageclasses.storage.k8s.io (fix: grant it get and list on storageclasses)", ErrForbidden)
		return nil
	case err != nil:
		return fmt.Errorf("kubernetes: list StorageClasses: %w", err)
	}
	c.Storage = PickStorage(l.Items, e.cfg.Objects.StorageClass)
	return nil
}
