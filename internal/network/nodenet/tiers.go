package nodenet

import (
	"fmt"

	"rung.dev/rung/internal/tenancy"
)

// supports says whether a replica of tier t can join a tenant network on
// this node, and why not. Tiers reports the same to the planner, so that
// it places nothing here that Attach would refuse.
func (n *Net) supports(t tenancy.Tier) error {
	switch t {
	case tenancy.Container, tenancy.Host:
		return nil
	case tenancy.Sandbox:
		// Debian 12's runsc (20221219) can't set up gVisor's network in a
		// user-namespaced sandbox (docs/networks.md). Fail closed rather
		// than run unreachable or outside the rules.
		return fmt.Errorf("%w: the sandbox tier can't join a tenant network on this node: runsc --network=sandbox fails in a user-namespaced sandbox (docs/networks.md); use the container tier (same organization) or no spec.network", ErrUnsupported)
	case tenancy.VM:
		return n.tapSupported() // tap.go
	default:
		return fmt.Errorf("%w: tier %s", ErrUnsupported, t)
	}
}

// Tiers are the tiers this node attaches tenant networks to (reported in
// its heartbeat).
func (n *Net) Tiers() tenancy.Set {
	var s tenancy.Set
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		if n.supports(t) == nil {
			s = s.With(t)
		}
	}
	return s
}
