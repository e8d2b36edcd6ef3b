// Package auth is rung's identity and access model: bearer tokens (made,
// parsed and checked against a stored hash) and the role-based decisions
// of who may do what to which object. It is pure: it stores nothing and
// does no I/O beyond reading randomness for new tokens.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a principal may do.
type Role string

// Roles. An operator manages the site (topology, policy, every tenant); the
// tenant roles are scoped to one tenant.
const (
	// Operator may do everything.
	Operator Role = "operator"
	// TenantAdmin manages its tenant's workloads and reads its Tenant.
	TenantAdmin Role = "tenant-admin"
	// TenantViewer reads its tenant's workloads and its Tenant.
	TenantViewer Role = "tenant-viewer"
	// NodeAgent is one node's `rung agent`: it may only heartbeat as its
	// own node and read that node's desired replicas.
	NodeAgent Role = "node"
)

// Roles lists every role, most powerful first.
var Roles = []Role{Operator, TenantAdmin, TenantViewer, NodeAgent}

// ErrInvalidRole: a role name that is not one of Roles, or a role without
// the tenant it needs.
var ErrInvalidRole = errors.New("invalid role")

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !slices.Contains(Roles, r) {
		names := make([]string, len(Roles))
		for i, r := range Roles {
			names[i] = string(r)
		}
		return "", fmt.Errorf("role %q: %w: use one of %s", s, ErrInvalidRole, strings.Join(names, ", "))
	}
	return r, nil
}

// Principal is who is making a request: the holder of one token.
type Principal struct {
	// ID is the token's public identifier, for logs and the audit trail.
	ID   string `json:"id"`
	Role Role   `json:"role"`
	// Tenant is the tenant a tenant role is scoped to; empty for operators.
	Tenant string `json:"tenant,omitempty"`
	// Node is the topology node a node role is scoped to; empty otherwise.
	Node string `json:"node,omitempty"`
}

// Validate checks that the role exists, that tenant roles name a tenant
// and the operator role does not, and that exactly the node role names a
// node.
func (p Principal) Validate() error {
	if _, err := ParseRole(string(p.Role)); err != nil {
		return err
	}
	switch {
	case p.Role == NodeAgent && (p.Node == "" || p.Tenant != ""):
		return fmt.Errorf("role %s: %w: name the node it is scoped to, and no tenant", p.Role, ErrInvalidRole)
	case p.Role == NodeAgent:
		return nil
	case p.Node != "":
		return fmt.Errorf("role %s: %w: only a node token is scoped to a node; leave the node out", p.Role, ErrInvalidRole)
	case p.Role == Operator && p.Tenant != "":
		return fmt.Errorf("role %s: %w: an operator is not scoped to a tenant; leave the tenant out", p.Role, ErrInvalidRole)
	case p.Role != Operator && p.Tenant == "":
		return fmt.Errorf("role %s: %w: name the tenant it is scoped to", p.Role, ErrInvalidRole)
	}
	return nil
}

// String is "ROLE" or "ROLE@TENANT" with the token id, for logs.
func (p Principal) String() string {
	s := string(p.Role)
	if p.Tenant != "" {
		s += "@" + p.Tenant
	}
	if p.Node != "" {
		s += "@" + p.Node
	}
	return s + " (token " + p.ID + ")"
}

// Sees reports whether p may know that objects of tenant exist at all.
func (p Principal) Sees(tenant string) bool {
	return p.Role == Operator || p.Tenant != "" && tenant == p.Tenant
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal ctx carries.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
