package nodenet

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ScopeFor is the scope of the node whose data directory is dataDir (the
// one internal/plugins opens it with).
func ScopeFor(dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:4])
}

// Inspection is a replica's network as the kernel has it, for rung verify.
type Inspection struct {
	// Address is the address on the replica's eth0, read in its namespace.
	Address string `json:"address"`
	// Interface is the node's end of its link.
	Interface string `json:"interface"`
	// NetNSInode identifies the replica's network namespace; HostNetNSInode
	// the node's (they differ).
	NetNSInode     uint64 `json:"netnsInode"`
	HostNetNSInode uint64 `json:"hostNetnsInode"`
	// Rules are the rules of its chains in the node's table, as nft
	// prints them (in: who may connect to it; out: what it may reach).
	Rules []string `json:"rules"`
	// Tap: the replica's link is a tap (the vm tier): Address is the
	// record's, set by the guest's init inside the guest, and the node's
	// end (owner, route) is what was checked.
	Tap bool `json:"tap,omitempty"`
	// Netstack: the replica is a sandbox on gVisor's own network stack
	// (--network=sandbox), which takes eth0's address and routes into the
	// sandbox and strips them from the namespace, so that the host kernel
	// neither answers nor routes for the replica there. Address is the
	// record's (held inside gVisor); what was checked is what the host
	// shows: eth0 up with no address or route of its own.
	Netstack bool `json:"netstack,omitempty"`
	// Problems are what does not match the replica's network record.
	Problems []string `json:"problems,omitempty"`
}

// Inspect reads replica id's network (its process pid) under the node at
// dataDir; ok is false when the replica has no tenant network. netstack
// says the replica is a sandbox on gVisor's network stack (Netstack).
func Inspect(ctx context.Context, dataDir, id string, pid int, netstack bool) (Inspection, bool, error) {
	return InspectIn(ctx, Config{Dir: filepath.Join(dataDir, "network"), Scope: ScopeFor(dataDir)}, id, pid, netstack)
}

// InspectIn is Inspect for the node cfg configures (its namespace too).
func InspectIn(ctx context.Context, cfg Config, id string, pid int, netstack bool) (Inspection, bool, error) {
	n := &Net{cfg: cfg, table: "rung-" + cfg.Scope}
	rec, err := n.read(id)
	if err != nil {
		if os.IsNotExist(unwrapPath(err)) {
			return Inspection{}, false, nil
		}
		return Inspection{}, true, err
	}
	in := Inspection{Interface: rec.Iface}
	var st, host syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
		in.Problems = append(in.Problems, "network namespace unreadable: "+err.Error())
	}
	hostNS := "/proc/self/ns/net"
	if cfg.NetNS != "" {
		hostNS = cfg.NetNS
	}
	if err := syscall.Stat(hostNS, &host); err == nil {
		in.HostNetNSInode = host.Ino
	}
	in.NetNSInode = st.Ino
	if in.NetNSInode != 0 && in.NetNSInode == in.HostNetNSInode {
		in.Problems = append(in.Problems, "shares the node's network namespace")
	}
	if inspectTap(cfg, rec, pid, &in) { // tap.go: a vm replica
		// its eth0 is inside the guest; the node's end was checked
	} else if ns, err := netns.GetFromPid(pid); err == nil {
		if h, err := netlink.NewHandleAt(ns); err == nil {
			l, err := h.LinkByName("eth0")
			if err == nil {
				if addrs, err := h.AddrList(l, netlink.FAMILY_V4); err == nil && len(addrs) > 0 {
					in.Address = addrs[0].IPNet.String()
				}
			}
			if netstack {
				inspectNetstack(h, l, err, rec, &in)
			}
			h.Close()
		}
		ns.Close()
	}
	if a, err := netip.ParsePrefix(in.Address); !in.Tap && !in.Netstack && (err != nil || a.Addr() != rec.Addr) {
		in.Problems = append(in.Problems, fmt.Sprintf("eth0 has %q, the record says %s", in.Address, rec.Addr))
	}
	var opts []nftables.ConnOption
	if cfg.NetNS != "" {
		ns, err := netns.GetFromPath(cfg.NetNS)
		if err != nil {
			return in, true, err
		}
		defer ns.Close()
		opts = append(opts, nftables.WithNetNSFd(int(ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return in, true, err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: n.table}
	for _, chain := range []string{"in-" + rec.Iface, "out-" + rec.Iface} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: chain, Table: t})
		if err != nil || len(rules) == 0 {
			in.Problems = append(in.Problems, fmt.Sprintf("no chain %s in table %s", chain, n.table))
			continue
		}
		for _, r := range rules {
			in.Rules = append(in.Rules, chain+": "+Format(r.Exprs))
		}
	}
	return in, true, nil
}

func unwrapPath(err error) error {
	for e := err; e != nil; {
		if pe, ok := e.(*os.PathError); ok {
			return pe
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		e = u.Unwrap()
	}
	return err
}

// Format prints the expressions rules.go writes the way nft does, roughly.
func Format(es []expr.Any) string {
	var out []string
	var pending string // the left side loaded into the register
	var mask []byte    // a bitwise mask applied to it
	for _, e := range es {
		switch x := e.(type) {
		case *expr.Meta:
			switch x.Key {
			case expr.MetaKeyIIFNAME:
				pending = "iifname"
			case expr.MetaKeyOIFNAME:
				pending = "oifname"
			case expr.MetaKeyL4PROTO:
				pending = "l4proto"
			}
		case *expr.Payload:
			mask = nil
			switch {
			case x.Base == expr.PayloadBaseNetworkHeader && x.Offset == 12:
				pending = "ip saddr"
			case x.Base == expr.PayloadBaseNetworkHeader && x.Offset == 16:
				pending = "ip daddr"
			case x.Base == expr.PayloadBaseTransportHeader && x.Offset == 2:
				pending = "th dport"
			}
		case *expr.Ct:
			pending, mask = "ct state", nil
			if x.Key == expr.CtKeySTATUS {
				pending = "ct status"
			}
		case *expr.Bitwise:
			mask = x.Mask
		case *expr.Cmp:
			op := ""
			if x.Op == expr.CmpOpNeq {
				op = "!= "
			}
			switch {
			case strings.HasPrefix(pending, "ct ") && len(mask) == 4:
				// "!= 0" after a mask: any of the mask's bits.
				out = append(out, pending+" "+ctBitsName(pending, binary.NativeEndian.Uint32(mask)))
			case strings.HasPrefix(pending, "ip ") && len(mask) == 4:
				ones := 0
				for _, b := range mask {
					ones += popcount(b)
				}
				out = append(out, pending+" "+op+value(pending, x.Data)+"/"+strconv.Itoa(ones))
			default:
				out = append(out, pending+" "+op+value(pending, x.Data))
			}
			mask = nil
		case *expr.Lookup:
			op := ""
			if x.Invert {
				op = "!= "
			}
			out = append(out, pending+" "+op+"@"+x.SetName)
		case *expr.Verdict:
			switch x.Kind {
			case expr.VerdictAccept:
				out = append(out, "accept")
			case expr.VerdictDrop:
				out = append(out, "drop")
			case expr.VerdictReturn:
				out = append(out, "return")
			case expr.VerdictJump:
				out = append(out, "jump "+x.Chain)
			}
		case *expr.Masq:
			out = append(out, "masquerade")
		case *expr.NAT:
			out = append(out, "dnat")
		}
	}
	return strings.Join(out, " ")
}

func value(left string, b []byte) string {
	switch {
	case left == "iifname" || left == "oifname":
		return strconv.Quote(strings.TrimRight(string(b), "\x00"))
	case strings.HasPrefix(left, "ip ") && len(b) == 4:
		return netip.AddrFrom4([4]byte(b)).String()
	case left == "th dport" && len(b) == 2:
		return strconv.Itoa(int(binary.BigEndian.Uint16(b)))
	case left == "l4proto" && len(b) == 1:
		switch b[0] {
		case unix.IPPROTO_TCP:
			return "tcp"
		case unix.IPPROTO_UDP:
			return "udp"
		}
	case strings.HasPrefix(left, "ct "):
		return "set"
	}
	return hex.EncodeToString(b)
}

func ctBitsName(key string, bits uint32) string {
	if key == "ct status" && bits == ipsDstNAT {
		return "dnat"
	}
	var names []string
	for _, b := range []struct {
		bit  uint32
		name string
	}{{expr.CtStateBitESTABLISHED, "established"}, {expr.CtStateBitRELATED, "related"}, {expr.CtStateBitNEW, "new"}, {expr.CtStateBitINVALID, "invalid"}} {
		if bits&b.bit != 0 {
			names = append(names, b.name)
		}
	}
	return strings.Join(names, ",")
}

func popcount(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// inspectNetstack checks a gVisor-netstack sandbox's namespace as the host
// sees it (Inspection.Netstack): eth0 (link, or linkErr) up, with neither
// an address nor a route left to the host kernel.
func inspectNetstack(h *netlink.Handle, link netlink.Link, linkErr error, rec record, in *Inspection) {
	in.Netstack = true
	if linkErr != nil {
		in.Problems = append(in.Problems, "no eth0 in the sandbox's namespace: "+linkErr.Error())
		return
	}
	if in.Address != "" {
		in.Problems = append(in.Problems, fmt.Sprintf("eth0 keeps %s in the sandbox's namespace: the host kernel answers for it, not gVisor", in.Address))
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		in.Problems = append(in.Problems, "eth0 is down in the sandbox's namespace")
	}
	if routes, err := h.RouteList(nil, netlink.FAMILY_V4); err != nil || len(routes) > 0 {
		in.Problems = append(in.Problems, fmt.Sprintf("the sandbox's namespace keeps %d IPv4 route(s) (%v): the host kernel routes for it, not gVisor", len(routes), err))
	}
	in.Address = rec.Addr.String() + "/32"
}
