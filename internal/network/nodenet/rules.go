package nodenet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/network"
)

// ipsDstNAT is conntrack's IPS_DST_NAT status bit: the connection came in
// through one of the table's published ports.
const ipsDstNAT = 0x20

// loopback is 127.0.0.0/8.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// apply replaces the node's table with rules, atomically (one netlink
// batch: ensure, delete, add). With no replicas the table is removed.
func apply(c *nftables.Conn, name string, r network.Rules, dns bool) error {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: name}
	c.AddTable(t)
	c.DelTable(t)
	if len(r.Replicas) == 0 {
		return c.Flush()
	}
	c.AddTable(t)
	sets := map[string]*nftables.Set{}
	tenants := map[string]bool{}
	for t := range r.Tenants {
		tenants[t] = true
	}
	for _, x := range r.Replicas {
		for _, a := range x.Ingress {
			tenants[a.Tenant] = true
		}
	}
	for _, tn := range slices.Sorted(func(yield func(string) bool) {
		for k := range tenants {
			if !yield(k) {
				return
			}
		}
	}) {
		s := &nftables.Set{Table: t, Name: "t-" + tn, KeyType: nftables.TypeIPAddr}
		var els []nftables.SetElement
		for _, a := range r.Tenants[tn] {
			b := a.As4()
			els = append(els, nftables.SetElement{Key: b[:]})
		}
		if err := c.AddSet(s, els); err != nil {
			return fmt.Errorf("set of tenant %s: %w", tn, err)
		}
		sets[tn] = s
	}
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Table: t, Name: "forward", Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	in := c.AddChain(&nftables.Chain{Table: t, Name: "input", Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	pre := c.AddChain(&nftables.Chain{Table: t, Name: "prerouting", Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	out := c.AddChain(&nftables.Chain{Table: t, Name: "output", Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Table: t, Name: "postrouting", Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	rule := func(ch *nftables.Chain, e ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e}) }

	// Replies of allowed connections pass; everything else is decided below.
	rule(fwd, append(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))...)
	rule(in, append(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))...)
	for _, x := range r.Replicas {
		ochain := c.AddChain(&nftables.Chain{Table: t, Name: "out-" + x.Iface})
		ichain := c.AddChain(&nftables.Chain{Table: t, Name: "in-" + x.Iface})
		rule(fwd, append(ifname(expr.MetaKeyIIFNAME, x.Iface), jump(ochain.Name))...)
		rule(fwd, append(ifname(expr.MetaKeyOIFNAME, x.Iface), jump(ichain.Name))...)
		// Out: only its own source address; never the denied prefixes; the
		// tenant networks (the destination decides); the rest with egress.
		rule(ochain, addr(12, x.Addr, expr.CmpOpNeq, verdict(expr.VerdictDrop))...)
		for _, d := range r.Deny {
			rule(ochain, prefix(16, d, expr.CmpOpEq, verdict(expr.VerdictDrop))...)
		}
		for _, p := range r.Pools {
			rule(ochain, prefix(16, p, expr.CmpOpEq, verdict(expr.VerdictReturn))...)
		}
		if !x.Egress {
			rule(ochain, verdict(expr.VerdictDrop))
		}
		// In: published ports (DNAT'd here), then who may connect.
		rule(ichain, append(ctStatus(ipsDstNAT), verdict(expr.VerdictAccept))...)
		for _, a := range x.Ingress {
			e := []expr.Any{payload(12, 4), &expr.Lookup{SourceRegister: 1, SetName: sets[a.Tenant].Name, SetID: sets[a.Tenant].ID}}
			if a.Port != 0 {
				e = append(e, l4(a.Protocol, a.Port)...)
			}
			rule(ichain, append(e, verdict(expr.VerdictAccept))...)
		}
		rule(ichain, verdict(expr.VerdictDrop))
		// The node itself: nothing but the name server on its gateway.
		if dns && x.Gateway.IsValid() {
			e := append(ifname(expr.MetaKeyIIFNAME, x.Iface), addr(16, x.Gateway, expr.CmpOpEq, nil)...)
			e = append(e, l4("udp", 53)...)
			rule(in, append(e, verdict(expr.VerdictAccept))...)
		}
		rule(in, append(ifname(expr.MetaKeyIIFNAME, x.Iface), verdict(expr.VerdictDrop))...)
		for _, p := range x.Publish {
			for _, ch := range []*nftables.Chain{pre, out} {
				e := []expr.Any{&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)}}
				e = append(e, l4(p.Protocol, p.NodePort)...)
				b := x.Addr.As4()
				e = append(e, &expr.Immediate{Register: 1, Data: b[:]},
					&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, uint16(p.Port))},
					&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
				rule(ch, e...)
			}
		}
		// Published ports through 127.0.0.1 from the node itself (as
		// with Docker and Nomad): output's DNAT above sends such a
		// connection to the replica's link with a loopback source, which
		// the link accepts (route_localnet, set on the links of replicas
		// that publish) and which is rewritten here to the gateway, so
		// the replica answers its link and never sees 127.0.0.1.
		if len(x.Publish) > 0 && x.Gateway.IsValid() {
			e := append(prefix(12, loopback, expr.CmpOpEq, nil), ifname(expr.MetaKeyOIFNAME, x.Iface)...)
			gw := x.Gateway.As4()
			e = append(e, &expr.Immediate{Register: 1, Data: gw[:]},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1})
			rule(post, e...)
		}
		if x.Egress {
			e := addr(12, x.Addr, expr.CmpOpEq, nil)
			for _, p := range r.Pools {
				e = append(e, prefix(16, p, expr.CmpOpNeq, nil)...)
			}
			rule(post, append(e, &expr.Masq{})...)
		}
	}
	// Other nodes' replicas (and spoofers) never reach this node itself.
	for _, p := range r.Pools {
		rule(in, prefix(12, p, expr.CmpOpEq, verdict(expr.VerdictDrop))...)
	}
	return c.Flush()
}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

func jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b}}
}

func payload(off, n uint32) expr.Any {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

// addr matches the IPv4 source (off 12) or destination (off 16) address.
func addr(off uint32, a netip.Addr, op expr.CmpOp, then expr.Any) []expr.Any {
	b := a.As4()
	e := []expr.Any{payload(off, 4), &expr.Cmp{Op: op, Register: 1, Data: b[:]}}
	if then != nil {
		e = append(e, then)
	}
	return e
}

// prefix matches an address (off as in addr) in p (op Eq) or outside it.
func prefix(off uint32, p netip.Prefix, op expr.CmpOp, then expr.Any) []expr.Any {
	m := uint32(0)
	if p.Bits() > 0 {
		m = ^uint32(0) << (32 - p.Bits())
	}
	net := p.Masked().Addr().As4()
	e := []expr.Any{payload(off, 4),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.BigEndian.AppendUint32(nil, m), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: net[:]}}
	if then != nil {
		e = append(e, then)
	}
	return e
}

// l4 matches a protocol and destination port.
func l4(proto string, port int) []expr.Any {
	p := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		p = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, uint16(port))},
	}
}

func ctState(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATE, bits) }

func ctStatus(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATUS, bits) }

func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}
