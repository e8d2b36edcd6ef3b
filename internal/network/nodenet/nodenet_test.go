package nodenet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/network/netnstest"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/tenancy"
)

// host is a namespace "node" (netnstest.Host) that serves and fetches
// with busybox.
type host struct{ netnstest.Host }

// newHost is netnstest.NewHost.
func newHost(t *testing.T, addr string, sw ...string) host {
	t.Helper()
	return host{netnstest.NewHost(t, addr, sw...)}
}

// serve runs busybox httpd in the host's namespace on addr:port, serving
// body; it stops with the test.
func (h host) serve(t *testing.T, addr string, port int, body string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", h.Name, "busybox", "httpd", "-f", "-p", fmt.Sprintf("%s:%d", addr, port), "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

// newNode is the host "node" at 192.0.2.10, with a data directory and a
// fresh nftables scope for it; it skips without runc, busybox or nft.
func newNode(t *testing.T) (host, string, string) {
	t.Helper()
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	drivertest.RequireBinary(t, "nft")
	return newHost(t, "192.0.2.10"), drivertest.SearchableTempDir(t), scope()
}

// serveForbidden serves in h what replicas must never reach: the node's
// own API-like port (7440, "node-api") on every address of the node, and
// the metadata address 169.254.169.254 ("metadata").
func (h host) serveForbidden(t *testing.T) {
	t.Helper()
	netnstest.Run(t, "ip", "-n", h.Name, "addr", "add", "169.254.169.254/32", "dev", "lo")
	h.serve(t, "0.0.0.0", 7440, "node-api")
	h.serve(t, "169.254.169.254", 80, "metadata")
}

// get fetches url from the host's namespace, with nc: Debian's static
// busybox wget crashes in glibc's resolver when the host has an
// nsswitch.conf.
func (h host) get(url string, timeout int) (string, error) {
	host, port := hostPort(url)
	cmd := exec.Command("ip", "netns", "exec", h.Name, "busybox", "nc", "-w", fmt.Sprint(timeout), host, port)
	cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	out, err := cmd.CombinedOutput()
	if err == nil && !strings.Contains(string(out), "200 OK") {
		err = fmt.Errorf("no answer")
	}
	return string(out), err
}

// refusesNode checks that what serveForbidden serves answers on the node,
// and that replica id reaches none of it: the node's port on the node's
// address and on its gateway address gw, and the metadata address.
func (f *fixture) refusesNode(t *testing.T, id, gw string) {
	t.Helper()
	node := "http://" + f.host.Addr + ":7440/"
	if out, err := f.host.get(node, 30); err != nil || !strings.Contains(out, "node-api") {
		t.Fatalf("the node's own port does not answer on the node: %v %s", err, out)
	}
	if out, err := f.host.get("http://169.254.169.254/", 30); err != nil || !strings.Contains(out, "metadata") {
		t.Fatalf("the metadata server does not answer on the node: %v %s", err, out)
	}
	f.refused(t, id, node)
	f.refused(t, id, "http://"+gw+":7440/")
	f.refused(t, id, "http://169.254.169.254/")
}

type fixture struct {
	cfg  nodenet.Config
	host host
	net  *nodenet.Net
	node *replica.Node
	dir  string
	init string // rung-vm, with the vm tier (tap_test.go)
}

func open(t *testing.T, h host, dir, scope string) *fixture {
	t.Helper()
	ctx := t.Context()
	cfg := nodenet.Config{Dir: filepath.Join(dir, "network"), Scope: scope, NetNS: h.Path}
	nt, err := nodenet.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nt.Close() })
	n, err := replica.Open(ctx, dir, replica.Options{Attachers: []replica.Attacher{nt}, CgroupParent: "/rungtest/" + scope})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{cfg: cfg, host: h, net: nt, node: n, dir: dir}
}

func (f *fixture) busybox(t *testing.T) {
	t.Helper()
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	if _, err := f.node.Images().Pack(t.Context(), root, "busybox:latest", image.PackOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) start(t *testing.T, id, tenant string, net *network.Spec, script string) {
	t.Helper()
	s := replica.Spec{ID: id, Tenant: tenant, Tier: tenancy.Container, Image: "busybox:latest", Args: []string{"sh", "-c", script}, Network: net}
	if err := f.node.Start(t.Context(), s); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = f.node.Remove(ctx, id)
	})
}

// wget fetches url inside replica id (an HTTP GET over busybox nc); ok
// says a server answered.
func (f *fixture) wget(t *testing.T, id, url string, timeout int) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	host, port := hostPort(url)
	code, err := f.node.Exec(t.Context(), id, []string{"busybox", "nc", "-w", fmt.Sprint(timeout), host, port},
		runtime.ExecIO{Stdin: strings.NewReader("GET / HTTP/1.0\r\n\r\n"), Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("exec in %s: %v", id, err)
	}
	return out.String(), code == 0 && strings.Contains(out.String(), "200 OK")
}

// reach polls until id fetches want from url (servers start in their own
// time on a loaded machine), failing after a minute.
func (f *fixture) reach(t *testing.T, id, url, want string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, ok := f.wget(t, id, url, 10)
		if ok && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			f.dump(t, id)
			t.Fatalf("%s could not fetch %s: %s", id, url, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (f *fixture) refused(t *testing.T, id, url string) {
	t.Helper()
	if out, ok := f.wget(t, id, url, 2); ok {
		t.Errorf("%s fetched %s, want it refused: %q", id, url, out)
	}
}

func scope() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

const web = "echo $TENANT_BODY > /tmp/index.html; busybox httpd -p 9090 -h /tmp; exec busybox httpd -f -p 8080 -h /tmp"

// TestTenantNetworkPackets runs real replicas under runc in a namespace
// "node" and proves each rule with real packets: the same tenant reaches
// every port, another tenant none, allowTenants exactly its port, the node
// and 169.254.169.254 are unreachable, a published port answers on the
// node's address; then everything is gone after the replicas stop, also
// when a new agent (kill -9 of the old one) removes them.
func TestTenantNetworkPackets(t *testing.T) {
	h, dir, sc := newNode(t)
	f := open(t, h, dir, sc)
	f.busybox(t)
	h.serveForbidden(t)

	spec := func(workload string, ports ...network.Port) *network.Spec {
		return &network.Spec{Pool: "10.201.0.0/16", Subnet: "10.201.3.0/24", Workload: workload, Ports: ports}
	}
	f.start(t, "acme-web-0", "acme", spec("web", network.Port{Port: 8080, Protocol: "tcp", AllowTenants: []string{"geo"}, NodePort: 30080}),
		strings.ReplaceAll(web, "$TENANT_BODY", "acme-web"))
	f.start(t, "acme-cli-0", "acme", spec("cli"), "exec sleep 3600")
	f.start(t, "beta-cli-0", "beta", spec("cli"), "exec sleep 3600")
	f.start(t, "geo-cli-0", "geo", spec("cli"), "exec sleep 3600")
	webAddr, ok := f.net.Address("acme-web-0")
	if !ok {
		t.Fatal("acme-web-0 has no address")
	}
	url := func(port int) string { return fmt.Sprintf("http://%s:%d/", webAddr, port) }

	// Same tenant: every port.
	f.reach(t, "acme-cli-0", url(8080), "acme-web")
	f.reach(t, "acme-cli-0", url(9090), "acme-web")
	// allowTenants: exactly the one port.
	f.reach(t, "geo-cli-0", url(8080), "acme-web")
	f.refused(t, "geo-cli-0", url(9090))
	// Another tenant: no port.
	f.refused(t, "beta-cli-0", url(8080))
	f.refused(t, "beta-cli-0", url(9090))
	// The node (its address, its gateway address) and the metadata address.
	f.refusesNode(t, "acme-cli-0", "10.201.3.1")
	// What rung verify shows, read from the kernel.
	st, err := f.node.State(t.Context(), "acme-web-0")
	if err != nil {
		t.Fatal(err)
	}
	in, ok, err := nodenet.InspectIn(t.Context(), f.cfg, "acme-web-0", st.Pid, false)
	if err != nil || !ok {
		t.Fatalf("inspect: %v %v", ok, err)
	}
	if in.Address != webAddr.String()+"/32" || in.NetNSInode == 0 || in.NetNSInode == in.HostNetNSInode || len(in.Problems) > 0 ||
		!slices.Contains(in.Rules, "in-"+in.Interface+": ip saddr @t-geo l4proto tcp th dport 8080 accept") ||
		!slices.Contains(in.Rules, "in-"+in.Interface+": ct status dnat accept") ||
		!slices.Contains(in.Rules, "out-"+in.Interface+": ip daddr 169.254.0.0/16 drop") {
		t.Errorf("inspection of acme-web-0: %+v", in)
	}
	// Discovery: the workload's name resolves for its own tenant only.
	if out := f.exec(t, "acme-cli-0", "busybox", "nslookup", "web"); !strings.Contains(out, webAddr.String()) {
		t.Errorf("acme's web does not resolve in acme-cli-0:\n%s", out)
	}
	if out := f.exec(t, "beta-cli-0", "busybox", "nslookup", "web"); strings.Contains(out, webAddr.String()) || !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("acme's web resolves in beta-cli-0 (want NXDOMAIN):\n%s", out)
	}
	// Published: the node port answers on the node's address, and on
	// 127.0.0.1 for a user on the node (as with Docker and Nomad).
	for _, a := range []string{"192.0.2.10", "127.0.0.1"} {
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, err := h.get("http://"+a+":30080/", 10)
			if err == nil && strings.Contains(out, "acme-web") {
				break
			}
			if time.Now().After(deadline) {
				f.dump(t, "acme-web-0")
				t.Fatalf("published port %s:30080: %v %s", a, err, out)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	// The replica saw the gateway, never a loopback source.
	if out := f.exec(t, "acme-web-0", "busybox", "netstat", "-tn"); strings.Contains(out, "127.0.0.1") {
		t.Errorf("a loopback source reached the replica:\n%s", out)
	}
	stats, err := f.net.Stats("acme-web-0")
	if err != nil || stats.TxBytes == 0 || stats.RxPackets == 0 {
		t.Errorf("stats of acme-web-0 = %+v, %v: want traffic counted", stats, err)
	}

	// An agent killed with -9 leaves replicas running; the next one opens
	// the same node, re-applies the rules and removes what it is told to.
	g := open(t, h, dir, sc)
	f.reach(t, "acme-cli-0", url(8080), "acme-web")
	f.refused(t, "beta-cli-0", url(8080))
	for _, id := range []string{"acme-web-0", "acme-cli-0", "beta-cli-0", "geo-cli-0"} {
		if err := g.node.Remove(t.Context(), id); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	if out := netnstest.Run(t, "ip", "-n", h.Name, "-o", "link"); strings.Contains(out, " rv") {
		t.Errorf("links left after the replicas stopped:\n%s", out)
	}
	if out := netnstest.Run(t, "ip", "netns", "exec", h.Name, "nft", "list", "tables"); strings.Contains(out, "rung-"+sc) {
		t.Errorf("table left after the replicas stopped:\n%s", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "network")); len(ents) != 0 {
		t.Errorf("network records left: %v", ents)
	}
}

// dump logs the node's and replica id's network, to explain a failure.
func (f *fixture) dump(t *testing.T, id string) {
	for _, args := range [][]string{{"ip", "-n", f.host.Name, "addr"}, {"ip", "-n", f.host.Name, "route"}, {"ip", "netns", "exec", f.host.Name, "nft", "list", "ruleset"}, {"ip", "netns", "exec", f.host.Name, "sysctl", "net.ipv4.ip_forward"}} {
		out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
		t.Logf("%s:\n%s", strings.Join(args, " "), out)
	}
	for _, args := range [][]string{{"busybox", "ip", "addr"}, {"busybox", "ip", "route"}} {
		var out bytes.Buffer
		_, _ = f.node.Exec(t.Context(), id, args, runtime.ExecIO{Stdout: &out, Stderr: &out})
		t.Logf("in %s: %s:\n%s", id, strings.Join(args, " "), out.String())
	}

}

func hostPort(url string) (string, string) {
	host, port, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"), ":")
	if port == "" {
		port = "80"
	}
	return host, port
}

// exec runs args in replica id and returns its output.
func (f *fixture) exec(t *testing.T, id string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if _, err := f.node.Exec(t.Context(), id, args, runtime.ExecIO{Stdout: &out, Stderr: &out}); err != nil {
		t.Fatalf("exec in %s: %v", id, err)
	}
	return out.String()
}

// TestTenantNetworkAcrossNodes runs two namespace "nodes" on one switch:
// a tenant's replicas reach each other across them (routed through the
// peers' underlay addresses), another tenant's don't, and a replica can't
// reach the other node's agent port or gateway.
func TestTenantNetworkAcrossNodes(t *testing.T) {
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	sw := netnstest.NewSwitch(t)
	h1, h2 := newHost(t, "192.0.2.11", sw), newHost(t, "192.0.2.12", sw)
	f1 := open(t, h1, drivertest.SearchableTempDir(t), scope())
	f2 := open(t, h2, drivertest.SearchableTempDir(t), scope())
	f1.busybox(t)
	f2.busybox(t)
	h1.serve(t, "0.0.0.0", 7440, "agent-h1")
	spec := func(subnet, workload string) *network.Spec {
		return &network.Spec{Pool: "10.202.0.0/16", Subnet: subnet, Workload: workload}
	}
	f1.start(t, "acme-web-0", "acme", spec("10.202.1.0/24", "web"), strings.ReplaceAll(web, "$TENANT_BODY", "acme-web"))
	f2.start(t, "acme-cli-0", "acme", spec("10.202.2.0/24", "cli"), "exec sleep 3600")
	f2.start(t, "beta-cli-0", "beta", spec("10.202.2.0/24", "cli"), "exec sleep 3600")
	webAddr, _ := f1.net.Address("acme-web-0")
	acmeCli, _ := f2.net.Address("acme-cli-0")
	betaCli, _ := f2.net.Address("beta-cli-0")
	if err := f1.net.SetPeers(t.Context(), []nodenet.Peer{{Node: "h2", Underlay: netip.MustParseAddr(h2.Addr), Subnet: netip.MustParsePrefix("10.202.2.0/24"),
		Replicas: []network.Remote{{Tenant: "acme", Workload: "cli", Addr: acmeCli}, {Tenant: "beta", Workload: "cli", Addr: betaCli}}}}); err != nil {
		t.Fatal(err)
	}
	if err := f2.net.SetPeers(t.Context(), []nodenet.Peer{{Node: "h1", Underlay: netip.MustParseAddr(h1.Addr), Subnet: netip.MustParsePrefix("10.202.1.0/24"),
		Replicas: []network.Remote{{Tenant: "acme", Workload: "web", Addr: webAddr}}}}); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:8080/", webAddr)
	f2.reach(t, "acme-cli-0", url, "acme-web")
	f2.reach(t, "acme-cli-0", fmt.Sprintf("http://%s:9090/", webAddr), "acme-web")
	f2.refused(t, "beta-cli-0", url)
	if out, err := h2.get("http://192.0.2.11:7440/", 30); err != nil || !strings.Contains(out, "agent-h1") {
		t.Fatalf("h1's agent port does not answer h2 itself: %v %s", err, out)
	}
	f2.refused(t, "acme-cli-0", "http://192.0.2.11:7440/")
	f2.refused(t, "acme-cli-0", "http://10.202.1.1:7440/")
	if out := f2.exec(t, "acme-cli-0", "busybox", "nslookup", "web"); !strings.Contains(out, webAddr.String()) {
		t.Errorf("acme's web on h1 does not resolve in acme-cli-0 on h2:\n%s", out)
	}
	// Peers gone: their routes go too.
	if err := f2.net.SetPeers(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if out := netnstest.Run(t, "ip", "-n", h2.Name, "route"); strings.Contains(out, "10.202.1.0/24") {
		t.Errorf("route to a removed peer left:\n%s", out)
	}
}
