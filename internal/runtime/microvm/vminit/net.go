package vminit

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"

	"rung.dev/rung/internal/runtime/microvm/channel"
)

// configureNet brings up lo and, with a network, eth0 (virtio-net on the
// node's tap): the replica's /32 address, a link route to the gateway (the
// node's end of the tap) and the default route through it, as a
// container's veth gets them.
func configureNet(c *channel.Net) error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	if c == nil {
		return nil
	}
	addr, err := netlink.ParseAddr(c.Addr)
	if err != nil {
		return fmt.Errorf("network: address %q: %w", c.Addr, err)
	}
	gw := net.ParseIP(c.Gateway).To4()
	if gw == nil {
		return fmt.Errorf("network: gateway %q", c.Gateway)
	}
	var eth netlink.Link
	deadline := time.Now().Add(30 * time.Second)
	for {
		eth, err = netlink.LinkByName("eth0")
		if err == nil {
			break
		}
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) || time.Now().After(deadline) {
			return fmt.Errorf("network: eth0: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := netlink.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("network: address: %w", err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("network: eth0 up: %w", err)
	}
	idx := eth.Attrs().Index
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("network: route to the gateway: %w", err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: gw}); err != nil {
		return fmt.Errorf("network: default route: %w", err)
	}
	return nil
}
