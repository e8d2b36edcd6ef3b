package agent

import (
	"context"
	"fmt"
	"net/netip"

	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// Network is a node's tenant networks as its agent drives them: reported
// in each heartbeat, and told the other nodes after it (DESIGN §9).
type Network interface {
	Report() *wire.NodeNetwork
	SetPeers(ctx context.Context, peers []wire.Peer) error
	// Replica is replica id's address and traffic ("", nil: none).
	Replica(id string) (string, *wire.NetworkUsage)
	// SetReady says whether discovery may answer with replica id.
	SetReady(id string, ready bool)
}

// PeerSource is the control plane's view of the other nodes.
type PeerSource interface {
	NodePeers(ctx context.Context, node string) ([]wire.Peer, error)
}

// NodeNetwork drives nt with underlay as the node's own address.
func NodeNetwork(nt *nodenet.Net, underlay netip.Addr) Network {
	return nodeNetwork{nt: nt, underlay: underlay}
}

type nodeNetwork struct {
	nt       *nodenet.Net
	underlay netip.Addr
}

func (n nodeNetwork) Report() *wire.NodeNetwork {
	out := &wire.NodeNetwork{Underlay: n.underlay.String(), Addresses: map[string]string{}, Tiers: []string{}}
	tiers := n.nt.Tiers()
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		if tiers.Has(t) {
			out.Tiers = append(out.Tiers, t.String())
		}
	}
	for id, a := range n.nt.Addresses() {
		if len(out.Addresses) < wire.MaxNodeAddresses {
			out.Addresses[id] = a.String()
		}
	}
	return out
}

func (n nodeNetwork) Replica(id string) (string, *wire.NetworkUsage) {
	a, ok := n.nt.Address(id)
	if !ok {
		return "", nil
	}
	st, err := n.nt.Stats(id)
	if err != nil {
		return a.String(), nil
	}
	return a.String(), &wire.NetworkUsage{RxBytes: st.RxBytes, TxBytes: st.TxBytes, RxPackets: st.RxPackets, TxPackets: st.TxPackets}
}

func (n nodeNetwork) SetReady(id string, ready bool) { n.nt.SetReady(id, ready) }

func (n nodeNetwork) SetPeers(ctx context.Context, peers []wire.Peer) error {
	out := make([]nodenet.Peer, 0, len(peers))
	for _, p := range peers {
		under, err1 := netip.ParseAddr(p.Underlay)
		sub, err2 := netip.ParsePrefix(p.Subnet)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("peer %s: underlay %q, subnet %q", p.Node, p.Underlay, p.Subnet)
		}
		np := nodenet.Peer{Node: p.Node, Underlay: under, Subnet: sub}
		for _, r := range p.Replicas {
			a, err := netip.ParseAddr(r.Address)
			if err != nil || !sub.Contains(a) {
				continue
			}
			np.Replicas = append(np.Replicas, network.Remote{Tenant: r.Tenant, Workload: r.Workload, Addr: a})
		}
		out = append(out, np)
	}
	return n.nt.SetPeers(ctx, out)
}
