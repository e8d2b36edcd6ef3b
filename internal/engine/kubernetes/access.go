package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ErrForbidden: the kubeconfig's user lacks a right rung needs.
var ErrForbidden = errors.New("kubeconfig lacks rights")

// right is one verb on one resource, cluster-wide.
type right struct{ verb, group, resource string }

// needed are the rights rung uses: it reads nodes and RuntimeClasses, and
// owns namespaces and what it puts in them.
var needed = func() []right {
	var out []right
	for _, r := range []right{{group: "", resource: "nodes"}, {group: "node.k8s.io", resource: "runtimeclasses"}} {
		for _, v := range []string{"get", "list", "watch"} {
			out = append(out, right{v, r.group, r.resource})
		}
	}
	for _, r := range []right{
		{group: "", resource: "namespaces"}, {group: "", resource: "pods"},
		{group: "", resource: "resourcequotas"}, {group: "", resource: "limitranges"},
		{group: "networking.k8s.io", resource: "networkpolicies"},
		{group: "", resource: "services"}, {group: "", resource: "persistentvolumeclaims"},
	} {
		for _, v := range []string{"get", "list", "watch", "create", "patch", "delete"} {
			out = append(out, right{v, r.group, r.resource})
		}
	}
	return out
}()

// CheckAccess asks the cluster (SelfSubjectAccessReview) whether the
// client may do everything rung does, and names the first missing verb
// and resource.
func CheckAccess(ctx context.Context, c kubernetes.Interface, roleBindings bool) error {
	rights := needed
	if roleBindings {
		for _, v := range []string{"get", "list", "watch", "create", "patch", "delete", "bind"} {
			rights = append(rights, right{v, "rbac.authorization.k8s.io", "rolebindings"})
		}
	}
	var missing []string
	for _, r := range rights {
		rev, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: r.verb, Group: r.group, Resource: r.resource,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("kubernetes: check rights (%s %s): %w", r.verb, r.resource, err)
		}
		if !rev.Status.Allowed {
			res := r.resource
			if r.group != "" {
				res += "." + r.group
			}
			missing = append(missing, fmt.Sprintf("%s %s", r.verb, res))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: the kubeconfig's user cannot %s (cluster-wide); bind it a ClusterRole granting these verbs on these resources", ErrForbidden, strings.Join(missing, ", "))
	}
	return nil
}
