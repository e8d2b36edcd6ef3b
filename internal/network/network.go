// Package network decides tenant networks (DESIGN §9) without touching the
// kernel: which slice of the Topology's pool a node gets, which address a
// replica gets, which node port a published port takes, and the rules that
// apply to each replica, as data. internal/network/nodenet applies them.
package network

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	v1 "rung.dev/rung/api/v1"
)

// Errors callers can check with errors.Is.
var (
	ErrExhausted = errors.New("no free address")
	ErrNoNetwork = errors.New("no network")
	ErrInvalid   = errors.New("invalid network")
)

// Spec is a replica's network as the control plane decides it: the node's
// slice it takes an address from, the name others find it by, its ports
// and whether it may leave the tenant network.
type Spec struct {
	// Pool is the whole Topology pool (every tenant's replicas, all nodes).
	Pool string `json:"pool"`
	// Subnet is the node's slice of Pool.
	Subnet string `json:"subnet"`
	// Workload is the name the replica is found by (its workload's name).
	Workload string `json:"workload"`
	Ports    []Port `json:"ports,omitempty"`
	Egress   bool   `json:"egress,omitempty"`
}

// Port is one served port; NodePort is set when it is published.
type Port struct {
	Port         int      `json:"port"`
	Protocol     string   `json:"protocol"`
	NodePort     int      `json:"nodePort,omitempty"`
	AllowTenants []string `json:"allowTenants,omitempty"`
}

// NodeSubnet returns slice index of pool split into 2^bits slices.
func NodeSubnet(pool netip.Prefix, bits, index int) (netip.Prefix, error) {
	if !pool.Addr().Is4() || pool.Masked() != pool {
		return netip.Prefix{}, fmt.Errorf("%w: pool %s is not an IPv4 network", ErrInvalid, pool)
	}
	size := pool.Bits() + bits
	if bits < 0 || size > 30 {
		return netip.Prefix{}, fmt.Errorf("%w: pool %s split by %d bits", ErrInvalid, pool, bits)
	}
	if index < 0 || index >= 1<<bits {
		return netip.Prefix{}, fmt.Errorf("%w: node %d of %d slices in %s", ErrInvalid, index, 1<<bits, pool)
	}
	base := pool.Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += uint32(index) << (32 - size)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), size), nil
}

// Gateway is the node's own address in subnet: the first host address. It
// answers replicas' ARP for their default route; replicas may not reach it
// (the node's addresses are denied).
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

// Allocate returns the lowest address of subnet that is not the network,
// the gateway, the broadcast address or in used.
func Allocate(subnet netip.Prefix, used []netip.Addr) (netip.Addr, error) {
	subnet = subnet.Masked()
	for a := Gateway(subnet).Next(); subnet.Contains(a); a = a.Next() {
		if !subnet.Contains(a.Next()) { // broadcast
			break
		}
		if !slices.Contains(used, a) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w in %s (%d in use)", ErrExhausted, subnet, len(used))
}

// NodeIndex finds node's slice number: its position in its Topology's
// nodes (append nodes to keep the others' slices).
func NodeIndex(set *v1.Set, node string) (*v1.TopologyNetwork, int, bool) {
	for _, t := range set.Topologies {
		for i, n := range t.Spec.Nodes {
			if n.Name == node {
				return t.Spec.Network, i, t.Spec.Network != nil
			}
		}
	}
	return nil, 0, false
}

// ForWorkload returns the network of w's replicas on node, or nil when the
// node's Topology has no network (replicas keep a loopback-only namespace).
func ForWorkload(set *v1.Set, node string, w *v1.Workload) (*Spec, error) {
	tn, idx, ok := NodeIndex(set, node)
	if !ok {
		return nil, nil
	}
	pool, err := netip.ParsePrefix(tn.Pool)
	if err != nil {
		return nil, fmt.Errorf("%w: pool %q: %v", ErrInvalid, tn.Pool, err)
	}
	sub, err := NodeSubnet(pool, tn.Bits(), idx)
	if err != nil {
		return nil, err
	}
	ports, err := NodePorts(set)
	if err != nil {
		return nil, err
	}
	s := &Spec{Pool: pool.String(), Subnet: sub.String(), Workload: w.Metadata.Name, Egress: w.Spec.Egress}
	for _, p := range w.Spec.Ports {
		proto := string(p.Proto())
		out := Port{Port: p.Port, Protocol: proto, AllowTenants: slices.Clone(p.AllowTenants)}
		if p.Publish {
			out.NodePort = ports[PortKey(w.Metadata.Tenant+"/"+w.Metadata.Name, p.Port, proto)]
		}
		s.Ports = append(s.Ports, out)
	}
	return s, nil
}

// Published are the published ports of set's workloads as
// "NODEPORT/PROTO->PORT", by TENANT/NAME, so that a user who asked for
// publish: true can read which port answers. A set without a tenant
// network publishes nothing.
func Published(set *v1.Set) map[string][]string {
	if set == nil || !slices.ContainsFunc(set.Topologies, func(t v1.Topology) bool { return t.Spec.Network != nil }) {
		return nil
	}
	ports, err := NodePorts(set)
	if err != nil {
		return nil // the apply that made it so was refused; the plan says why
	}
	out := map[string][]string{}
	for _, w := range set.Workloads {
		key := w.Metadata.Tenant + "/" + w.Metadata.Name
		for _, p := range w.Spec.Ports {
			proto := string(p.Proto())
			if np := ports[PortKey(key, p.Port, proto)]; p.Publish && np != 0 {
				out[key] = append(out[key], fmt.Sprintf("%d/%s->%d", np, proto, p.Port))
			}
		}
	}
	return out
}

// PortKey names a workload's port in NodePorts' answer.
func PortKey(workload string, port int, proto string) string {
	return fmt.Sprintf("%s %d/%s", workload, port, proto)
}

// NodePorts gives every published port of set a node port: its own
// nodePort, else a free one from the first Topology's range, probing from
// a hash of its name so that adding a workload rarely moves another's.
func NodePorts(set *v1.Set) (map[string]int, error) {
	lo, hi, err := v1.ParsePortRange(v1.DefaultNodePorts)
	if err != nil {
		return nil, err
	}
	for _, t := range set.Topologies {
		if t.Spec.Network != nil {
			if lo, hi, err = t.Spec.Network.NodeRange(); err != nil {
				return nil, fmt.Errorf("%w: topology %s: %v", ErrInvalid, t.Metadata.Name, err)
			}
			break
		}
	}
	out := map[string]int{}
	taken := map[int]bool{}
	var auto []string
	for _, w := range set.Workloads {
		for _, p := range w.Spec.Ports {
			if !p.Publish {
				continue
			}
			proto := string(p.Proto())
			k := PortKey(w.Metadata.Tenant+"/"+w.Metadata.Name, p.Port, proto)
			if p.NodePort != 0 {
				out[k] = p.NodePort
				taken[p.NodePort] = true
			} else {
				auto = append(auto, k)
			}
		}
	}
	slices.Sort(auto)
	size := hi - lo + 1
	for _, k := range auto {
		h := fnv.New32a()
		h.Write([]byte(k))
		start := int(h.Sum32() % uint32(size))
		found := false
		for i := range size {
			p := lo + (start+i)%size
			if !taken[p] {
				out[k], taken[p], found = p, true, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: node-port range %d-%d is full", ErrExhausted, lo, hi)
		}
	}
	return out, nil
}

// Replica is one replica as the node's rules see it.
type Replica struct {
	ID     string
	Tenant string
	// Iface is the node-side interface of the replica's link.
	Iface string
	Addr  netip.Addr
	Spec  Spec
}

// Remote is a replica on another node: only its tenant matters here.
type Remote struct {
	Tenant   string     `json:"tenant"`
	Workload string     `json:"workload"`
	Addr     netip.Addr `json:"addr"`
}

// Allow lets a tenant's replicas reach a port (0: every port) of a
// replica.
type Allow struct {
	Tenant   string
	Protocol string // "" with Port 0
	Port     int
}

// Publish forwards a node port to a replica's port.
type Publish struct {
	Protocol string
	NodePort int
	Port     int
}

// ReplicaRules are the rules that apply to one replica.
type ReplicaRules struct {
	ID, Tenant, Iface string
	Addr              netip.Addr
	// Gateway is the node's address on the replica's link, where its
	// name server answers.
	Gateway netip.Addr
	// Ingress is who may open connections to it; nothing else may.
	Ingress []Allow
	Publish []Publish
	// Egress lets it reach addresses outside the pools, except Deny.
	Egress bool
}

// Rules are a node's whole rule set.
type Rules struct {
	// Tenants lists each tenant's addresses (here and on other nodes).
	Tenants map[string][]netip.Addr
	// Pools are the tenant networks: a replica reaches addresses in them
	// only when the destination's own rules allow it.
	Pools []netip.Prefix
	// Deny is never reachable from a replica, egress or not: link-local
	// (169.254.169.254 and friends), the node's and other nodes' addresses,
	// the control plane.
	Deny     []netip.Prefix
	Replicas []ReplicaRules
}

// LinkLocal is always denied.
var LinkLocal = netip.MustParsePrefix("169.254.0.0/16")

// Build computes a node's rules from its replicas, the other nodes'
// replicas and the addresses replicas must never reach.
func Build(local []Replica, remote []Remote, deny []netip.Prefix) (Rules, error) {
	r := Rules{Tenants: map[string][]netip.Addr{}, Deny: []netip.Prefix{LinkLocal}}
	for _, d := range deny {
		if !slices.Contains(r.Deny, d.Masked()) {
			r.Deny = append(r.Deny, d.Masked())
		}
	}
	for _, x := range remote {
		r.Tenants[x.Tenant] = append(r.Tenants[x.Tenant], x.Addr)
	}
	for _, x := range slices.SortedFunc(slices.Values(local), func(a, b Replica) int { return strings.Compare(a.ID, b.ID) }) {
		if !x.Addr.Is4() {
			return Rules{}, fmt.Errorf("%w: replica %s has no IPv4 address", ErrInvalid, x.ID)
		}
		pool, err := netip.ParsePrefix(x.Spec.Pool)
		if err != nil {
			return Rules{}, fmt.Errorf("%w: replica %s: pool %q", ErrInvalid, x.ID, x.Spec.Pool)
		}
		if !slices.Contains(r.Pools, pool) {
			r.Pools = append(r.Pools, pool)
		}
		r.Tenants[x.Tenant] = append(r.Tenants[x.Tenant], x.Addr)
		rr := ReplicaRules{ID: x.ID, Tenant: x.Tenant, Iface: x.Iface, Addr: x.Addr, Egress: x.Spec.Egress,
			Ingress: []Allow{{Tenant: x.Tenant}}}
		if sub, err := netip.ParsePrefix(x.Spec.Subnet); err == nil {
			rr.Gateway = Gateway(sub)
		}
		for _, p := range x.Spec.Ports {
			for _, t := range p.AllowTenants {
				if t != x.Tenant {
					rr.Ingress = append(rr.Ingress, Allow{Tenant: t, Protocol: p.Protocol, Port: p.Port})
				}
			}
			if p.NodePort != 0 {
				rr.Publish = append(rr.Publish, Publish{Protocol: p.Protocol, NodePort: p.NodePort, Port: p.Port})
			}
		}
		r.Replicas = append(r.Replicas, rr)
	}
	for t := range r.Tenants {
		slices.SortFunc(r.Tenants[t], func(a, b netip.Addr) int { return a.Compare(b) })
		r.Tenants[t] = slices.Compact(r.Tenants[t])
	}
	slices.SortFunc(r.Pools, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return r, nil
}
