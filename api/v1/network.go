package v1

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// TopologyNetwork is a Topology's spec.network: the address pool every
// node takes a slice of, and the node-port range published ports use.
type TopologyNetwork struct {
	// Pool is an IPv4 CIDR ("10.88.0.0/16") no other Topology's overlaps.
	Pool string `json:"pool"`
	// NodeBits splits the pool into 2^NodeBits node slices, one per node
	// in manifest order (default 8: a /16 pool gives /24 slices).
	NodeBits int `json:"nodeBits,omitempty"`
	// NodePorts is the range published ports take node ports from
	// (default "30000-32767", as Kubernetes' NodePort range).
	NodePorts string `json:"nodePorts,omitempty"`
}

// Port is one entry of a workload's spec.ports.
type Port struct {
	Name     string   `json:"name,omitempty"`
	Port     int      `json:"port"`
	Protocol Protocol `json:"protocol,omitempty"`
	// Publish maps the port on every node address from the topology's
	// node-port range (Kubernetes NodePort style).
	Publish bool `json:"publish,omitempty"`
	// NodePort picks the node port of a published port; 0 picks one.
	NodePort int `json:"nodePort,omitempty"`
	// AllowTenants opens this port, and only it, to these tenants' replicas.
	AllowTenants []string `json:"allowTenants,omitempty"`
}

// Proto is the port's protocol, tcp when the manifest leaves it out.
func (p Port) Proto() Protocol {
	if p.Protocol == "" {
		return ProtocolTCP
	}
	return p.Protocol
}

// Protocol is tcp (the default) or udp.
type Protocol string

// Protocols a port may use.
const (
	ProtocolTCP Protocol = "tcp"
	ProtocolUDP Protocol = "udp"
)

// PolicyNetwork is a Policy's spec.network: which tenants may do what a
// tenant network denies by default. "*" names every tenant.
type PolicyNetwork struct {
	// EgressTenants may run workloads with egress: true.
	EgressTenants []string `json:"egressTenants,omitempty"`
	// PrivilegedPortTenants may declare ports below 1024 (CIS 5.8).
	PrivilegedPortTenants []string `json:"privilegedPortTenants,omitempty"`
}

// Bounds of a workload's spec.ports: far beyond a real service, they keep
// a hostile manifest's cost (and the server's checks of each name) small.
const (
	// MaxPorts is the most entries of one workload's spec.ports.
	MaxPorts = 1024
	// MaxAllowTenants is the most tenants one port is opened to.
	MaxAllowTenants = 256
)

// Network defaults.
const (
	DefaultNodeBits  = 8
	DefaultNodePorts = "30000-32767"
)

// ParsePortRange parses "LOW-HIGH" (both 1..65535, LOW <= HIGH).
func ParsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("%q is not a port range LOW-HIGH within 1-65535", truncate(s))
	}
	return lo, hi, nil
}

// NodeRange returns the node-port range of n (the default when empty).
func (n *TopologyNetwork) NodeRange() (lo, hi int, err error) {
	r := n.NodePorts
	if r == "" {
		r = DefaultNodePorts
	}
	return ParsePortRange(r)
}

// Bits returns NodeBits or its default.
func (n *TopologyNetwork) Bits() int {
	if n.NodeBits == 0 {
		return DefaultNodeBits
	}
	return n.NodeBits
}

// consents reports whether list names tenant or "*".
func consents(list []string, tenant string) bool {
	return slices.Contains(list, tenant) || slices.Contains(list, "*")
}

// networks checks the Topologies' pools (each valid, none overlapping,
// big enough for its nodes) and the workloads' ports and egress against
// the node-port ranges and the Policies' consent.
func (v *validator) networks(topos, workloads []object) {
	type pool struct {
		p netip.Prefix
		o object
	}
	var pools []pool
	var ranges [][2]int
	for i := range v.s.Topologies {
		t, o := &v.s.Topologies[i], topos[i]
		n := t.Spec.Network
		if n == nil {
			continue
		}
		p, err := netip.ParsePrefix(n.Pool)
		switch {
		case n.Pool == "":
			v.fail(o, "spec.network.pool", "missing", "set an IPv4 CIDR such as 10.88.0.0/16")
			continue
		case err != nil || !p.Addr().Is4():
			v.fail(o, "spec.network.pool", fmt.Sprintf("%q is not an IPv4 CIDR", truncate(n.Pool)), "set an IPv4 CIDR such as 10.88.0.0/16")
			continue
		case p.Masked() != p:
			v.fail(o, "spec.network.pool", fmt.Sprintf("%s has host bits set", n.Pool), fmt.Sprintf("write %s", p.Masked()))
			continue
		}
		for _, q := range pools {
			if q.p.Overlaps(p) {
				v.fail(o, "spec.network.pool", fmt.Sprintf("%s overlaps the pool %s of %s %s", p, q.p, q.o.kind, q.o.name), "give each Topology a pool of its own")
			}
		}
		pools = append(pools, pool{p, o})
		bits := n.Bits()
		switch {
		case bits < 0 || bits > 24:
			v.fail(o, "spec.network.nodeBits", fmt.Sprintf("%d is out of range", n.NodeBits), "use 1 to 24 (8 gives 256 node slices)")
		case p.Bits()+bits > 29:
			v.fail(o, "spec.network.nodeBits", fmt.Sprintf("pool %s split %d ways leaves each node a /%d, too small for replicas", p, 1<<bits, p.Bits()+bits),
				fmt.Sprintf("use a larger pool or nodeBits of at most %d", max(29-p.Bits(), 0)))
		case len(t.Spec.Nodes) > 1<<bits:
			v.fail(o, "spec.network.nodeBits", fmt.Sprintf("pool %s split %d ways is too small for %d nodes", p, 1<<bits, len(t.Spec.Nodes)),
				"raise nodeBits or use a larger pool")
		}
		lo, hi, err := n.NodeRange()
		if err != nil {
			v.fail(o, "spec.network.nodePorts", err.Error(), "use a range such as 30000-32767")
			continue
		}
		ranges = append(ranges, [2]int{lo, hi})
	}
	inRange := func(port int) bool {
		if len(ranges) == 0 {
			lo, hi, _ := ParsePortRange(DefaultNodePorts)
			ranges = [][2]int{{lo, hi}}
		}
		for _, r := range ranges {
			if port >= r[0] && port <= r[1] {
				return true
			}
		}
		return false
	}
	var egress, low []string
	for _, p := range v.s.Policies {
		egress = append(egress, p.Spec.Network.EgressTenants...)
		low = append(low, p.Spec.Network.PrivilegedPortTenants...)
	}
	nodePortAt := map[int]string{}
	for i := range v.s.Workloads {
		w, o := &v.s.Workloads[i], workloads[i]
		tenant := w.Metadata.Tenant
		if w.Spec.Egress && !consents(egress, tenant) {
			v.fail(o, "spec.egress", fmt.Sprintf("tenant %s has no egress consent from the site", tenant),
				fmt.Sprintf("remove egress, or have an operator list %s in a Policy's spec.network.egressTenants", tenant))
		}
		if len(w.Spec.Ports) > MaxPorts {
			v.fail(o, "spec.ports", fmt.Sprintf("%d ports, more than %d", len(w.Spec.Ports), MaxPorts), "serve fewer ports, or split the workload")
			continue
		}
		seen := map[string]bool{}
		for j, pt := range w.Spec.Ports {
			path := index("spec.ports", j)
			if pt.Name != "" {
				v.dnsLabel(o, join(path, "name"), pt.Name, "http")
			}
			if !v.enum(o, join(path, "protocol"), string(pt.Protocol), "protocol", []string{string(ProtocolTCP), string(ProtocolUDP)}) {
				continue
			}
			proto := pt.Proto()
			switch {
			case pt.Port < 1 || pt.Port > 65535:
				v.fail(o, join(path, "port"), fmt.Sprintf("%d is out of range", pt.Port), "use a port from 1 to 65535")
			case pt.Port < 1024 && !consents(low, tenant):
				v.fail(o, join(path, "port"), fmt.Sprintf("%d is a privileged port (CIS 5.8)", pt.Port),
					fmt.Sprintf("use a port of 1024 or above, or have an operator list %s in a Policy's spec.network.privilegedPortTenants", tenant))
			}
			key := fmt.Sprintf("%d/%s", pt.Port, proto)
			if seen[key] {
				v.fail(o, join(path, "port"), fmt.Sprintf("%s is listed twice", key), "list each port once")
			}
			seen[key] = true
			if len(pt.AllowTenants) > MaxAllowTenants {
				v.fail(o, join(path, "allowTenants"), fmt.Sprintf("%d tenants, more than %d", len(pt.AllowTenants), MaxAllowTenants),
					"open the port to fewer tenants")
			}
			for k, t := range pt.AllowTenants {
				v.dnsLabel(o, index(join(path, "allowTenants"), k), t, "biology")
			}
			if pt.NodePort != 0 {
				p := join(path, "nodePort")
				switch {
				case !pt.Publish:
					v.fail(o, p, "set on a port that is not published", "set publish: true, or remove nodePort")
				case !inRange(pt.NodePort):
					v.fail(o, p, fmt.Sprintf("%d is outside the node-port range", pt.NodePort), "pick a port in the Topology's spec.network.nodePorts (default "+DefaultNodePorts+"), or leave it out")
				case pt.NodePort < 1024 && !consents(low, tenant):
					// The node's own privileged ports (ssh, DNS) are the
					// site's: a range reaching below 1024 does not give them away.
					v.fail(o, p, fmt.Sprintf("%d is a privileged port of the nodes (CIS 5.8)", pt.NodePort),
						fmt.Sprintf("leave nodePort out, or have an operator list %s in a Policy's spec.network.privilegedPortTenants", tenant))
				case nodePortAt[pt.NodePort] != "":
					v.fail(o, p, fmt.Sprintf("%d is already published by %s", pt.NodePort, nodePortAt[pt.NodePort]), "publish each node port once, or leave nodePort out to get a free one")
				default:
					nodePortAt[pt.NodePort] = o.name + " " + path
				}
			}
		}
	}
}
