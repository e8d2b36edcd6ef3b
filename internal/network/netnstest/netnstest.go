// Package netnstest makes throwaway network namespaces for tests that send
// real packets: "hosts" with an address on a veth, plugged into a bridge
// namespace (a "switch") or into a veth of their own, all removed when the
// test ends. Tests only: it runs ip(8) and fails the test on any error.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Prefix starts the name of every namespace New makes.
const Prefix = "rungtest-"

// Run runs args[0] with args[1:] and returns its combined output; it fails
// the test if the command fails.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// New makes a network namespace Prefix+RANDOM with lo up, deleted when the
// test ends. It skips the test without root or ip.
func New(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("ip not installed (iproute2): %v", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := Prefix + hex.EncodeToString(b)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// NewSwitch is a namespace with a bridge br0 that hosts plug into.
func NewSwitch(t testing.TB) string {
	t.Helper()
	sw := New(t)
	Run(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	Run(t, "ip", "-n", sw, "link", "set", "br0", "up")
	return sw
}

// Host is a network namespace standing in for a node: its own address on
// nic0, as a machine's NIC would carry it.
type Host struct {
	// Name is the namespace's name, Path its /run/netns path.
	Name, Path string
	Addr       string
}

// NewHost makes a host with addr/24 on nic0; plugged into switch sw, or,
// with sw empty, into a veth of its own (no dummy module on every kernel).
func NewHost(t testing.TB, addr string, sw ...string) Host {
	t.Helper()
	h := Host{Name: New(t), Addr: addr}
	h.Path = "/run/netns/" + h.Name
	if len(sw) == 0 {
		Run(t, "ip", "-n", h.Name, "link", "add", "nic0", "type", "veth", "peer", "name", "nic0p")
		Run(t, "ip", "-n", h.Name, "link", "set", "nic0p", "up")
	} else {
		port := "p" + h.Name[len(Prefix):]
		Run(t, "ip", "-n", h.Name, "link", "add", "nic0", "type", "veth", "peer", "name", port, "netns", sw[0])
		Run(t, "ip", "-n", sw[0], "link", "set", port, "master", "br0")
		Run(t, "ip", "-n", sw[0], "link", "set", port, "up")
	}
	Run(t, "ip", "-n", h.Name, "addr", "add", addr+"/24", "dev", "nic0")
	Run(t, "ip", "-n", h.Name, "link", "set", "nic0", "up")
	return h
}
