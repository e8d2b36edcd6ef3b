package nodenet

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/replica"
)

// The vm tier's link is a tap device instead of a veth: the node's end is
// the tap itself (named and tagged as a veth's node end would be, so the
// same nftables chains, sweep and Detach apply), routed the same way (the
// gateway address on it, a /32 route to the replica through it); the
// guest's virtio-net is the other end. QEMU never opens /dev/net/tun: the
// vm driver opens the tap in the node's namespace (bundle.VMNet) and QEMU
// inherits the descriptor, since QEMU runs in a network namespace of its
// own where no tap of this name exists. The tap is made in Attach, before
// the runtime creates the replica (the driver opens it then), persistent
// (it outlives QEMU until Detach removes it, as a veth's node end does).

// tapSupported says whether this node can make tap devices.
func (n *Net) tapSupported() error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: the vm tier's network needs tap devices: /dev/net/tun: %v (modprobe tun)", ErrUnsupported, err)
	}
	return f.Close()
}

// attachTap makes vm replica rec's tap (owned by the VMM's user uid:gid)
// and declares it to the vm driver. On error nothing is left: the tap, the
// record and the pending rules are undone.
func (n *Net) attachTap(a *replica.Attachment, rec record) error {
	if err := n.makeTap(rec, a.UID, a.GID); err != nil {
		_ = n.unlink(rec.Iface)
		_ = os.Remove(n.path(rec.ID))
		delete(n.pending, rec.ID)
		return fmt.Errorf("replica %s: tap %s: %w", rec.ID, rec.Iface, err)
	}
	sub, _ := netip.ParsePrefix(rec.Spec.Subnet)
	a.Opts = append(a.Opts, bundle.WithVMNet(bundle.VMNet{Tap: rec.Iface, NetNS: n.cfg.NetNS, Addr: rec.Addr, Gateway: network.Gateway(sub)}))
	return nil
}

func (n *Net) makeTap(rec record, uid, gid uint32) error {
	gw, err := n.forwardTo(rec)
	if err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name = rec.Iface
	// TUNSETIFF makes the device in the opener's namespace: the node's.
	// IFF_TUN_EXCL: a leftover of the same name is an error, never reused.
	if err := n.inNS(func() error {
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_TUN_EXCL, Owner: uid, Group: gid})
	}); err != nil {
		return fmt.Errorf("add tap: %w", err)
	}
	tap, err := n.nl.LinkByName(rec.Iface)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetAlias(tap, n.tag()+rec.ID); err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	if err := n.setNodeEnd(rec); err != nil {
		return err
	}
	return n.routeToReplica(tap, gw, rec.Addr)
}

// createdTap is Created for a vm replica: its tap exists since Attach;
// the guest runs only once its rules are applied, with its name server.
func (n *Net) createdTap(ctx context.Context, s replica.Spec) error {
	if err := n.rulesApplied(ctx, s.ID); err != nil {
		return fmt.Errorf("replica %s: rules: %w", s.ID, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	rec, err := n.read(s.ID)
	if err != nil {
		return err
	}
	sub, _ := netip.ParsePrefix(rec.Spec.Subnet)
	if err := n.serveDNS(network.Gateway(sub)); err != nil {
		return fmt.Errorf("replica %s: name server: %w", s.ID, err)
	}
	return nil
}

// inspectTap is Inspect for a vm replica, whose link is a tap: the guest's
// eth0 is inside the guest (its init sets the record's address), so what
// the host checks is its own end: a tap owned by the VMM's user (pid's),
// never root, carrying the route to the replica's address. It reports
// false when rec's link is not a tap.
func inspectTap(cfg Config, rec record, pid int, in *Inspection) bool {
	var h *netlink.Handle
	var err error
	if cfg.NetNS == "" {
		h, err = netlink.NewHandle()
	} else {
		ns, nerr := netns.GetFromPath(cfg.NetNS)
		if nerr != nil {
			return false
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		return false
	}
	defer h.Close()
	l, err := h.LinkByName(rec.Iface)
	if err != nil {
		return false
	}
	tap, ok := l.(*netlink.Tuntap)
	if !ok {
		return false
	}
	in.Tap = true
	in.Address = rec.Addr.String() + "/32"
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st); err != nil || tap.Owner != st.Uid || tap.Owner == 0 {
		in.Problems = append(in.Problems, fmt.Sprintf("tap %s is owned by uid %d, the VMM runs as %d", rec.Iface, tap.Owner, st.Uid))
	}
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	found := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP.Equal(net.IP(rec.Addr.AsSlice())) {
			if ones, _ := r.Dst.Mask.Size(); ones == 32 {
				found = true
			}
		}
	}
	if err != nil || !found {
		in.Problems = append(in.Problems, fmt.Sprintf("no /32 route to %s through tap %s", rec.Addr, rec.Iface))
	}
	return true
}
