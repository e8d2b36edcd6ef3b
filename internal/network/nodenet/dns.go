package nodenet

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// The node's name server answers replicas on their gateway address, port
// 53 (UDP): WORKLOAD resolves to the ready replicas of that workload of the
// asking replica's own tenant, here and on the peers. The tenant comes
// from the source address, which a replica can't forge (its chain drops
// any other source), so another tenant's names never resolve.

// serveDNS starts a name server on gw unless one runs there.
func (n *Net) serveDNS(gw netip.Addr) error {
	n.dnsMu.Lock()
	defer n.dnsMu.Unlock()
	if _, ok := n.dns[gw]; ok {
		return nil
	}
	var pc net.PacketConn
	err := n.inNS(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				// The address may leave with the last replica's link and
				// come back with the next one's.
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		var err error
		pc, err = lc.ListenPacket(n.ctx, "udp4", netip.AddrPortFrom(gw, 53).String())
		return err
	})
	if err != nil {
		return err
	}
	n.dns[gw] = pc
	go n.answer(pc)
	return nil
}

func (n *Net) answer(pc net.PacketConn) {
	buf := make([]byte, 512)
	for {
		m, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		if resp := n.resolve(buf[:m], src.AddrPort().Addr().Unmap()); resp != nil {
			_, _ = pc.WriteTo(resp, from)
		}
	}
}

// resolve answers one query from replica address src; nil drops it.
func (n *Net) resolve(q []byte, src netip.Addr) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	resp := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RCode: dnsmessage.RCodeNameError}
	name := strings.TrimSuffix(strings.ToLower(question.Name.String()), ".")
	addrs, found := n.lookup(src, name)
	if found {
		resp.RCode = dnsmessage.RCodeSuccess
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), resp)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(question) != nil || b.StartAnswers() != nil {
		return nil
	}
	if question.Type == dnsmessage.TypeA && question.Class == dnsmessage.ClassINET {
		for _, a := range addrs {
			rh := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 5}
			if b.AResource(rh, dnsmessage.AResource{A: a.As4()}) != nil {
				break
			}
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// lookup finds workload name of src's tenant: its ready replicas here and
// on the peers. found says the tenant has such a workload.
func (n *Net) lookup(src netip.Addr, name string) ([]netip.Addr, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	recs, err := n.records()
	if err != nil {
		return nil, false
	}
	tenant := ""
	for _, r := range recs {
		if r.Addr == src {
			tenant = r.Tenant
		}
	}
	if tenant == "" {
		return nil, false
	}
	var out []netip.Addr
	found := false
	for _, r := range recs {
		if r.Tenant == tenant && r.Spec.Workload == name {
			found = true
			if !n.notReady[r.ID] && n.linked(r) {
				out = append(out, r.Addr)
			}
		}
	}
	for _, p := range n.peers {
		for _, x := range p.Replicas {
			if x.Tenant == tenant && x.Workload == name {
				found = true
				out = append(out, x.Addr)
			}
		}
	}
	return out, found
}

// linked says whether r's link exists (its replica runs).
func (n *Net) linked(r record) bool {
	_, err := n.nl.LinkByName(r.Iface)
	return err == nil
}

// SetReady marks replica id ready or not for discovery: a replica that is
// not ready (unhealthy, starting) does not resolve. Replicas are ready
// once linked unless the agent says otherwise.
func (n *Net) SetReady(id string, ready bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ready {
		delete(n.notReady, id)
	} else {
		n.notReady[id] = true
	}
}
