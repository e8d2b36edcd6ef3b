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
		if n.cfg.SandboxNetworks {
			return nil
		}
		// Debian 12's runsc (20221219) can't set up gVisor's network in a
		// user-namespaced sandbox (docs/networks.md). Fail closed rather
		// than run unreachable or outside the rules.
		return fmt.Errorf("%w: the sandbox tier can't join a tenant network on this node: its runsc can't run gVisor's network stack in a user-namespaced sandbox (--network=sandbox; Debian 12's can't: docs/networks.md); run the agent with --runsc PATH to a current runsc (make runsc), use the container tier (same organization), or drop spec.network", ErrUnsupported)
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
