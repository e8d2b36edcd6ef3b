package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// DefaultAPIPort is the port of rung's default API address
// (127.0.0.1:7440); it is always reserved (Config.ReservedPorts).
const DefaultAPIPort = 7440

// reservedPorts are the node ports no workload may publish: a node port
// is forwarded from every node address, so one equal to a port rung
// listens on would capture the API's (or metrics') connections.
func (s *Server) reservedPorts() []int {
	out := []int{DefaultAPIPort}
	for _, p := range s.reserved {
		if p > 0 && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// checkWorkloadRefs checks what a workload names beyond its own manifest,
// which Set.Validate cannot see from one tenant's objects: the tenants its
// ports are opened to exist, and its node ports are neither rung's own nor
// published by another workload (of any tenant: node ports are one space
// per node address). It returns the ops that make the write fail if
// another workload's node ports change before it commits.
func (s *Server) checkWorkloadRefs(ctx context.Context, w *v1.Workload, subj subject) ([]store.Op, error) {
	var fes []error
	fail := func(field, msg, fix string) {
		fes = append(fes, &v1.FieldError{Kind: v1.KindWorkload, Name: subj.name, Field: field, Msg: msg, Fix: fix})
	}
	reserved := s.reservedPorts()
	explicit := false
	var tenants map[string]bool // read once, when a port names another tenant
	for i, pt := range w.Spec.Ports {
		path := fmt.Sprintf("spec.ports[%d]", i)
		for k, t := range pt.AllowTenants {
			if t == w.Metadata.Tenant {
				continue
			}
			if tenants == nil {
				vals, _, err := s.st(ctx).List(ctx, tenantsDir)
				if err != nil {
					return nil, fmt.Errorf("list %s: %w", tenantsDir, err)
				}
				tenants = map[string]bool{}
				for _, v := range vals {
					tenants[v.Key[len(tenantsDir)+1:]] = true
				}
			}
			// A name that is not a tenant now would open the port to
			// whoever is given that name later.
			if !tenants[t] {
				fail(fmt.Sprintf("%s.allowTenants[%d]", path, k), fmt.Sprintf("tenant %q does not exist", t),
					"name an existing tenant (check the spelling with its admins), or remove it")
			}
		}
		if !pt.Publish || pt.NodePort == 0 {
			continue
		}
		explicit = true
		if slices.Contains(reserved, pt.NodePort) {
			fail(path+".nodePort", fmt.Sprintf("%d is a port rung itself listens on (the API's)", pt.NodePort),
				"leave nodePort out to get a free one, or pick another port of the node-port range")
		}
	}
	if len(fes) > 0 {
		return nil, manifestError(http.StatusUnprocessableEntity, errors.Join(fes...), subj)
	}
	if !explicit {
		return nil, nil
	}
	// Bumped by every write of a workload with an explicit node port:
	// of two such applies at once (in any tenants), one commits and the
	// other is retried, and then sees the first's ports.
	guard := store.PutOp(nodePortGuard, []byte(`{}`), store.Create)
	switch g, err := s.st(ctx).Get(ctx, nodePortGuard); {
	case err == nil:
		guard = store.PutOp(nodePortGuard, []byte(`{}`), g.Revision)
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("get %s: %w", nodePortGuard, err)
	}
	if err := s.checkNodePortsFree(ctx, w, subj); err != nil {
		return nil, err
	}
	return []store.Op{guard}, nil
}

// nodePortGuard is the key every write of a workload with an explicit
// node port bumps (checkWorkloadRefs).
const nodePortGuard = "/nodeports/guard"

// checkNodePortsFree refuses a node port another workload publishes. A
// tenant role learns only that the port is taken (it is visible on the
// nodes anyway), not by whom.
func (s *Server) checkNodePortsFree(ctx context.Context, w *v1.Workload, subj subject) error {
	vals, _, err := s.st(ctx).List(ctx, workloadsDir)
	if err != nil {
		return fmt.Errorf("list %s: %w", workloadsDir, err)
	}
	self := kindWorkload.key(w.Metadata.Tenant, w.Metadata.Name)
	owner := map[int]string{}
	for _, v := range vals {
		if v.Key == self {
			continue
		}
		var o v1.Workload
		if err := json.Unmarshal(v.Data, &o); err != nil {
			return fmt.Errorf("decode %s: %w", v.Key, err)
		}
		for _, pt := range o.Spec.Ports {
			if pt.Publish && pt.NodePort != 0 {
				owner[pt.NodePort] = o.Metadata.Tenant + "/" + o.Metadata.Name
			}
		}
	}
	for i, pt := range w.Spec.Ports {
		who, taken := owner[pt.NodePort]
		if !pt.Publish || pt.NodePort == 0 || !taken {
			continue
		}
		by := "another workload"
		if principal(ctx).Role == auth.Operator {
			by = "workload " + who
		}
		return &httpError{Status: http.StatusConflict, Code: wire.CodeConflict,
			Msg: fmt.Sprintf("Workload %s: spec.ports[%d].nodePort: %d is already published by %s (fix: leave nodePort out to get a free one, or pick another)",
				subj.name, i, pt.NodePort, by)}
	}
	return nil
}

// checkNodePortRange refuses a Topology whose node-port range holds a port
// rung listens on: a port picked from the range for a workload would
// capture the API's connections on every node.
func (s *Server) checkNodePortRange(change *v1.Set, subj subject) error {
	for _, t := range change.Topologies {
		if t.Spec.Network == nil {
			continue
		}
		lo, hi, err := t.Spec.Network.NodeRange()
		if err != nil {
			continue // Validate reported it
		}
		for _, p := range s.reservedPorts() {
			if p >= lo && p <= hi {
				fe := &v1.FieldError{Kind: v1.KindTopology, Name: t.Metadata.Name, Field: "spec.network.nodePorts",
					Msg: fmt.Sprintf("%d-%d holds port %d, which rung itself listens on (the API's)", lo, hi, p),
					Fix: fmt.Sprintf("use a range without it, such as %s", v1.DefaultNodePorts)}
				return manifestError(http.StatusUnprocessableEntity, fe, subj)
			}
		}
	}
	return nil
}
