package network

import "rung.dev/rung/internal/tenancy"

// Joins says whether a replica of tier t can join a tenant network on a
// node of this build, and why not. It is the one place both sides read:
// the node's attacher refuses what can't join (nodenet), and the planner
// never places a replica where it would be refused (topology), so a
// networked workload that needs a sandbox stays unplaced with this reason
// instead of failing on its node. Never weaker: such a replica is not
// moved down to a tier that can join.
func Joins(t tenancy.Tier) (bool, string) {
	switch t {
	case tenancy.Container, tenancy.Host:
		return true, ""
	case tenancy.Sandbox:
		// Debian 12's runsc (20221219) can't set up gVisor's network in a
		// user-namespaced sandbox (docs/networks.md).
		return false, "the sandbox tier can't join a tenant network: runsc --network=sandbox fails in a user-namespaced sandbox (docs/networks.md)"
	default:
		return false, "the vm tier can't join a tenant network yet: its tap device is designed, not built (docs/networks.md)"
	}
}

// Unjoinable are the tiers of s that can't join a tenant network.
func Unjoinable(s tenancy.Set) tenancy.Set {
	var out tenancy.Set
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		if ok, _ := Joins(t); s.Has(t) && !ok {
			out = out.With(t)
		}
	}
	return out
}
