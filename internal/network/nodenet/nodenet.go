// Package nodenet is the node side of tenant networks (DESIGN §9): a
// replica.Attacher that gives each replica of a network an address from
// its node's slice, a veth pair into the replica's own network namespace,
// a /32 route, and the node's nftables table that enforces who reaches
// whom. Decisions come from internal/network; this package only applies
// them, through netlink and nftables (never the ip or nft commands).
//
// Routed /32s, not a bridge: every packet between two replicas, same node
// or not, crosses the node's IP forward path, where one table decides it.
// A bridge would pass same-bridge traffic at layer 2, beside the rules.
package nodenet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/tenancy"
)

// ErrUnsupported says a tier can't join a tenant network on this node; the
// replica is refused rather than run without its network's rules.
var ErrUnsupported = errors.New("tenant network unsupported")

// routeProtocol marks the routes to other nodes' slices that SetPeers owns.
const routeProtocol netlink.RouteProtocol = 82

// Config configures a node's networks.
type Config struct {
	// Dir keeps one record per replica (address, interface, spec).
	Dir string
	// Scope names the nftables table ("rung-SCOPE") and tags the node's
	// links, so that two node processes on one machine never touch each
	// other's.
	Scope string
	// Deny are more prefixes replicas never reach (the control plane's
	// address when it is not on this node).
	Deny []netip.Prefix
	// NetNS is the node's network namespace (a path such as
	// /run/netns/h1); empty means the process's own. Tests run "hosts" in
	// namespaces they make.
	NetNS  string
	Logger *slog.Logger
	// SandboxNetworks says that this node's sandbox driver runs gVisor's
	// own network stack in the replica's namespace (runsc
	// --network=sandbox, which runtime.ProbeSandboxNetwork proved works):
	// sandbox replicas then join tenant networks like containers (the
	// same veth, made in Created, which runsc copies at start).
	SandboxNetworks bool
}

// Peer is another node: where its slice is routed, and its replicas (so
// that this node's rules know their tenants).
type Peer struct {
	Node     string
	Underlay netip.Addr
	Subnet   netip.Prefix
	Replicas []network.Remote
}

// Net gives a node's replicas their tenant networks.
type Net struct {
	cfg   Config
	table string
	ns    netns.NsHandle // the node's namespace (closed by Close)
	nl    *netlink.Handle
	mu    sync.Mutex
	peers []Peer
	// pending are the rule updates Attach started, by replica (Created
	// waits for them).
	pending map[string]chan error
	// forwarding is set once IPv4 forwarding is on (first link).
	forwarding bool
	// notReady are replicas discovery leaves out (SetReady).
	notReady map[string]bool
	// ctx ends the name servers (Close); dns holds one per gateway.
	ctx    context.Context
	cancel context.CancelFunc
	dnsMu  sync.Mutex
	dns    map[netip.Addr]net.PacketConn
}

// record is what the node keeps about one replica's network.
type record struct {
	ID     string       `json:"id"`
	Tenant string       `json:"tenant"`
	Iface  string       `json:"iface"`
	Addr   netip.Addr   `json:"addr"`
	Spec   network.Spec `json:"spec"`
}

// Open opens the node's networks: removes links left by
// a crash whose replica has no record, and re-applies the rules of the
// replicas that have one (they may still run: kill -9 of the agent).
func Open(ctx context.Context, cfg Config) (*Net, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Scope == "" || strings.ContainsAny(cfg.Scope, "/ ") || len(cfg.Scope) > 32 {
		return nil, fmt.Errorf("network scope %q: use up to 32 letters and digits", cfg.Scope)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("network state: %w", err)
	}
	n := &Net{cfg: cfg, table: "rung-" + cfg.Scope, notReady: map[string]bool{}, pending: map[string]chan error{}, dns: map[netip.Addr]net.PacketConn{}}
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var err error
	if cfg.NetNS == "" {
		n.ns, err = netns.Get()
	} else {
		n.ns, err = netns.GetFromPath(cfg.NetNS)
	}
	if err != nil {
		return nil, fmt.Errorf("node network namespace %q: %w", cfg.NetNS, err)
	}
	if n.nl, err = netlink.NewHandleAt(n.ns); err != nil {
		n.ns.Close()
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.sweep(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// sweep removes links of replicas without a record and re-applies the rules.
func (n *Net) sweep() error {
	recs, err := n.records()
	if err != nil {
		return err
	}
	links, err := n.nl.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		id, ok := strings.CutPrefix(l.Attrs().Alias, n.tag())
		if ok && !slices.ContainsFunc(recs, func(r record) bool { return r.ID == id }) {
			if err := n.nl.LinkDel(l); err != nil {
				return fmt.Errorf("remove leftover link %s: %w", l.Attrs().Name, err)
			}
		}
	}
	return n.sync()
}

// Close releases the node's namespace handles; links and rules stay (the
// replicas may outlive the agent).
func (n *Net) Close() error {
	n.cancel()
	n.dnsMu.Lock()
	for gw, pc := range n.dns {
		pc.Close()
		delete(n.dns, gw)
	}
	n.dnsMu.Unlock()
	if n.nl != nil {
		n.nl.Close()
	}
	return n.ns.Close()
}

// sysctl writes a /proc/sys key as the node's namespace sees it.
func (n *Net) sysctl(key, value string) error {
	return n.inNS(func() error {
		return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
	})
}

// inNS runs f on a thread in the node's namespace.
func (n *Net) inNS(f func() error) error {
	if n.cfg.NetNS == "" {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		// The thread ends with the goroutine (no UnlockOSThread): it
		// never runs other code in the wrong namespace.
		goruntime.LockOSThread()
		if err := netns.Set(n.ns); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Name names the kind in errors.
func (n *Net) Name() string { return "network" }

func (n *Net) tag() string { return "rung/" + n.cfg.Scope + "/" }

// Iface is the node-side interface name of replica id: "rv" and a hash of
// scope and id (interface names hold at most 15 bytes).
func (n *Net) Iface(id string) string {
	sum := sha256.Sum256([]byte(n.cfg.Scope + "/" + id))
	return "rv" + hex.EncodeToString(sum[:])[:11]
}

// Attach gives a replica with a network its address (the link is made in
// Created, once the runtime has made its namespace).
func (n *Net) Attach(ctx context.Context, a *replica.Attachment) error {
	s := a.Spec.Network
	if s == nil {
		return nil
	}
	if err := n.supports(a.Spec.Tier); err != nil {
		return err
	}
	sub, err := netip.ParsePrefix(s.Subnet)
	if err != nil {
		return fmt.Errorf("%w: subnet %q", network.ErrInvalid, s.Subnet)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	recs, err := n.records()
	if err != nil {
		return err
	}
	var used []netip.Addr
	for _, r := range recs {
		if r.ID == a.Spec.ID {
			return fmt.Errorf("%w: replica %s already has address %s", network.ErrInvalid, r.ID, r.Addr)
		}
		used = append(used, r.Addr)
	}
	addr, err := network.Allocate(sub, used)
	if err != nil {
		return err
	}
	if err := resolvConf(a.Rootfs, network.Gateway(sub)); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	rec := record{ID: a.Spec.ID, Tenant: a.Spec.Tenant, Iface: n.Iface(a.Spec.ID), Addr: addr, Spec: *s}
	if err := n.write(rec); err != nil {
		return err
	}
	// The rules are applied while the runtime creates the replica (the
	// longest step of a start); Created waits for them before it links
	// the replica, so nothing runs or is reachable without them.
	done := make(chan error, 1)
	n.pending[rec.ID] = done
	go func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		done <- n.sync()
	}()
	if a.Spec.Tier == tenancy.VM {
		return n.attachTap(a, rec) // tap.go
	}
	return nil
}

// rulesApplied waits for the rules Attach started applying for replica id
// (or applies them, when this process did not attach it).
func (n *Net) rulesApplied(ctx context.Context, id string) error {
	n.mu.Lock()
	done, ok := n.pending[id]
	delete(n.pending, id)
	n.mu.Unlock()
	if !ok {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.sync()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Created links the replica's namespace (of process pid) to the node.
func (n *Net) Created(ctx context.Context, s replica.Spec, pid int) error {
	if s.Network == nil {
		return nil
	}
	if s.Tier == tenancy.VM {
		return n.createdTap(ctx, s) // tap.go: the tap is made in Attach
	}
	if err := n.rulesApplied(ctx, s.ID); err != nil {
		return fmt.Errorf("replica %s: rules: %w", s.ID, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	rec, err := n.read(s.ID)
	if err != nil {
		return err
	}
	if err := n.link(rec, pid); err != nil {
		n.unlink(rec.Iface)
		return fmt.Errorf("replica %s: link %s: %w", s.ID, rec.Iface, err)
	}
	sub, _ := netip.ParsePrefix(rec.Spec.Subnet)
	if err := n.serveDNS(network.Gateway(sub)); err != nil {
		n.unlink(rec.Iface)
		return fmt.Errorf("replica %s: name server: %w", s.ID, err)
	}
	return nil
}

// link makes the veth pair: the node's end carries the gateway address and
// the route to the replica's /32; the replica's end, eth0, carries the
// address and a default route through the gateway.
func (n *Net) link(rec record, pid int) error {
	gw, err := n.forwardTo(rec)
	if err != nil {
		return err
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("namespace of %d: %w", pid, err)
	}
	defer ns.Close()
	// The peer is made inside the replica's namespace as eth0, tagged and
	// named in the same request: moving a link between namespaces waits
	// for an RCU grace period (tens of ms on a loaded node), and each
	// rename or alias is another round trip.
	la := netlink.NewLinkAttrs()
	la.Name = rec.Iface
	la.Alias = n.tag() + rec.ID
	if err := n.nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns), PeerTxQLen: -1}); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	host, err := n.nl.LinkByName(rec.Iface)
	if err != nil {
		return err
	}
	if err := n.setNodeEnd(rec); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	in, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := h.AddrAdd(in, &netlink.Addr{IPNet: ipnet(rec.Addr, 32)}); err != nil {
		return fmt.Errorf("address: %w", err)
	}
	if err := h.LinkSetUp(in); err != nil {
		return err
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: in.Attrs().Index, Dst: ipnet(gw, 32), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to the gateway: %w", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: in.Attrs().Index, Gw: net.IP(gw.AsSlice())}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return n.routeToReplica(host, gw, rec.Addr)
}

// forwardTo is the gateway of rec's subnet, with IPv4 forwarding on:
// turned on with the first link, not before, so that a node without
// tenant networks keeps its settings.
func (n *Net) forwardTo(rec record) (netip.Addr, error) {
	sub, err := netip.ParsePrefix(rec.Spec.Subnet)
	if err != nil {
		return netip.Addr{}, err
	}
	if !n.forwarding {
		if err := n.sysctl("net/ipv4/ip_forward", "1"); err != nil {
			return netip.Addr{}, fmt.Errorf("enable IPv4 forwarding: %w", err)
		}
		n.forwarding = true
	}
	return network.Gateway(sub), nil
}

// setNodeEnd sets the node's end of rec's link (a veth or a vm's tap),
// in one visit to the node's namespace. No IPv6: a replica's link-local
// packets never reach the node's IPv6 sockets. A replica that publishes
// ports is reached through 127.0.0.1 too (rules.go), which needs the link
// to route loopback sources (route_localnet; the input chain still drops
// everything from the link but replies and the name server).
func (n *Net) setNodeEnd(rec record) error {
	return n.inNS(func() error {
		err := os.WriteFile("/proc/sys/net/ipv6/conf/"+rec.Iface+"/disable_ipv6", []byte("1"), 0o644)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disable IPv6: %w", err)
		}
		if publishes(rec.Spec) {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+rec.Iface+"/route_localnet", []byte("1"), 0o644); err != nil {
				return fmt.Errorf("route_localnet: %w", err)
			}
		}
		return nil
	})
}

// routeToReplica gives the node's end of a replica's link (a veth or a
// vm's tap) the gateway address, brings it up and routes the replica's
// /32 through it: every packet then crosses the node's forward path,
// where the rules are.
func (n *Net) routeToReplica(link netlink.Link, gw, addr netip.Addr) error {
	if err := n.nl.AddrAdd(link, &netlink.Addr{IPNet: ipnet(gw, 32)}); err != nil {
		return fmt.Errorf("gateway address: %w", err)
	}
	if err := n.nl.LinkSetUp(link); err != nil {
		return err
	}
	if err := n.nl.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipnet(addr, 32), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to the replica: %w", err)
	}
	return nil
}

// publishes reports whether the replica has a published port.
func publishes(s network.Spec) bool {
	for _, p := range s.Ports {
		if p.NodePort != 0 {
			return true
		}
	}
	return false
}

func (n *Net) unlink(iface string) error {
	l, err := n.nl.LinkByName(iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return n.nl.LinkDel(l)
}

// Detach removes the replica's link, record and rules. Idempotent.
func (n *Net) Detach(ctx context.Context, id string, _ *replica.Spec) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pending, id)
	if err := n.unlink(n.Iface(id)); err != nil {
		return fmt.Errorf("remove link of %s: %w", id, err)
	}
	if err := os.Remove(n.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return n.sync()
}

// SetPeers routes the other nodes' slices through their underlay
// addresses and lets their replicas' tenants in, replacing the last set.
func (n *Net) SetPeers(ctx context.Context, peers []Peer) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	want := map[netip.Prefix]bool{}
	for _, p := range peers {
		want[p.Subnet.Masked()] = true
		if err := n.nl.RouteReplace(&netlink.Route{Dst: ipnet(p.Subnet.Masked().Addr(), p.Subnet.Bits()), Gw: net.IP(p.Underlay.AsSlice()), Protocol: routeProtocol}); err != nil {
			return fmt.Errorf("route to node %s's replicas %s via %s: %w", p.Node, p.Subnet, p.Underlay, err)
		}
	}
	routes, err := n.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
		if !want[netip.PrefixFrom(a, ones)] {
			if err := n.nl.RouteDel(&r); err != nil {
				return fmt.Errorf("remove route to %s: %w", r.Dst, err)
			}
		}
	}
	n.peers = slices.Clone(peers)
	return n.sync()
}

// Address is replica id's address, if it has one here.
func (n *Net) Address(id string) (netip.Addr, bool) {
	rec, err := n.read(id)
	return rec.Addr, err == nil
}

// Addresses are the node's replicas' addresses, by replica ID.
func (n *Net) Addresses() map[string]netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	recs, _ := n.records()
	out := make(map[string]netip.Addr, len(recs))
	for _, r := range recs {
		out[r.ID] = r.Addr
	}
	return out
}

// Stats are a replica's traffic as its own interface counts it.
type Stats struct {
	RxBytes, TxBytes, RxPackets, TxPackets uint64
}

// Stats reads replica id's counters from the node's end of its link
// (what the node receives the replica sent).
func (n *Net) Stats(id string) (Stats, error) {
	l, err := n.nl.LinkByName(n.Iface(id))
	if err != nil {
		return Stats{}, err
	}
	s := l.Attrs().Statistics
	if s == nil {
		return Stats{}, fmt.Errorf("link %s has no statistics", n.Iface(id))
	}
	return Stats{RxBytes: s.TxBytes, TxBytes: s.RxBytes, RxPackets: s.TxPackets, TxPackets: s.RxPackets}, nil
}

// Table names the node's nftables table (for rung verify and tests).
func (n *Net) Table() string { return n.table }

// sync re-applies the whole table from the records and peers.
func (n *Net) sync() error {
	recs, err := n.records()
	if err != nil {
		return err
	}
	local := make([]network.Replica, 0, len(recs))
	for _, r := range recs {
		local = append(local, network.Replica{ID: r.ID, Tenant: r.Tenant, Iface: r.Iface, Addr: r.Addr, Spec: r.Spec})
	}
	var remote []network.Remote
	deny := slices.Clone(n.cfg.Deny)
	for _, p := range n.peers {
		remote = append(remote, p.Replicas...)
		deny = append(deny, netip.PrefixFrom(p.Underlay, 32))
	}
	rules, err := network.Build(local, remote, deny)
	if err != nil {
		return err
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(n.ns)))
	if err != nil {
		return err
	}
	if err := apply(c, n.table, rules, true); err != nil {
		return fmt.Errorf("nftables table %s: %w", n.table, err)
	}
	return nil
}

func (n *Net) path(id string) string { return filepath.Join(n.cfg.Dir, id+".json") }

func (n *Net) write(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := n.path(r.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, n.path(r.ID))
}

func (n *Net) read(id string) (record, error) {
	var r record
	b, err := os.ReadFile(n.path(id))
	if err != nil {
		return r, fmt.Errorf("network of replica %s: %w", id, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("network of replica %s: %w", id, err)
	}
	return r, nil
}

func (n *Net) records() ([]record, error) {
	ents, err := os.ReadDir(n.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var out []record
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		r, err := n.read(id)
		if err != nil {
			n.cfg.Logger.Warn("corrupt network record", "file", e.Name(), "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func ipnet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, 32)}
}

// resolvConf points the replica's resolver at the node's name server on
// its gateway. The file replaces whatever the image had (never followed
// through a symlink: os.Root keeps it inside the root).
func resolvConf(rootfs string, gw netip.Addr) error {
	if rootfs == "" {
		return nil
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll("etc", 0o755); err != nil {
		return err
	}
	if err := root.Remove("etc/resolv.conf"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return root.WriteFile("etc/resolv.conf", []byte("nameserver "+gw.String()+"\noptions ndots:0\n"), 0o644)
}
