package topology

import (
	"fmt"
	"slices"
	"strings"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/tenancy"
)

// DefaultNetworkTiers are the tiers a node attaches a tenant network to
// when its agent has not said: the container tier (and host, a container
// alone on its machine). gVisor's and QEMU's networks are per-node
// capabilities the agent reports (wire.NodeNetwork.Tiers), never assumed.
var DefaultNetworkTiers = tenancy.Set(0).With(tenancy.Container).With(tenancy.Host)

// markNetworked marks the nodes of Topologies with a network: each of
// their replicas joins its tenant's network, so they offer only the
// tiers that can (fail closed: a sandbox that can't attach is not placed
// there, rather than placed and refused by the node).
func (t *Topology) markNetworked(tops []v1.Topology) {
	for _, top := range tops {
		if top.Spec.Network == nil {
			continue
		}
		for _, vn := range top.Spec.Nodes {
			if i, ok := t.nodeIndex[vn.Name]; ok {
				n := &t.Nodes[i]
				n.Networked, n.NetworkTiers = true, DefaultNetworkTiers
				n.narrowNetwork()
			}
		}
	}
}

// narrowNetwork keeps a networked node's offer to the tiers that can join
// its network; the others go to NoNetwork.
func (n *Node) narrowNetwork() {
	if !n.Networked {
		return
	}
	all := n.Runtimes | n.NoNetwork
	n.Runtimes, n.NoNetwork = all&n.NetworkTiers, all&^n.NetworkTiers
}

// NetworkWhy says why the NoNetwork tiers are not offered, and the fixes.
func (n *Node) NetworkWhy() string {
	var names []string
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		if n.NoNetwork.Has(t) {
			names = append(names, t.String())
		}
	}
	what := names[0] + " tier"
	if len(names) > 1 {
		what = strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " tiers"
	}
	return fmt.Sprintf("%s can't join a tenant network on node %s: it attaches networks to %s only; "+
		"fix: give the tenants one organization (container tier), drop spec.network from the node's Topology, or run an agent there that reports %s networks",
		what, n.Name, n.NetworkTiers, strings.Join(names, "/"))
}

// Networks sets the tiers each networked node can attach a network to,
// from what its agent reports (report false: DefaultNetworkTiers), and
// narrows its offer to them. It returns a note for each node whose offer
// changed, sorted by node.
func (t *Topology) Networks(report func(node string) (tenancy.Set, bool)) []string {
	var notes []string
	for i := range t.Nodes {
		n := &t.Nodes[i]
		if !n.Networked {
			continue
		}
		got, ok := report(n.Name)
		if !ok {
			got = DefaultNetworkTiers
		}
		was := n.Runtimes
		n.NetworkTiers = got
		n.narrowNetwork()
		if n.Runtimes != was {
			notes = append(notes, fmt.Sprintf("node %s offers %s: it attaches tenant networks to %s", n.Name, n.Runtimes, got))
		}
	}
	slices.Sort(notes)
	return notes
}
