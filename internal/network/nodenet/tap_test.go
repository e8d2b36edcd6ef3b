package nodenet_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/network/netnstest"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// openVM is open with the vm tier (TCG allowed: tests only).
func openVM(t *testing.T, h host, dir, scope string) *fixture {
	t.Helper()
	drivertest.RequireQEMU(t, microvm.DefaultBinary)
	bin := os.Getenv("RUNG_VM_INIT")
	if bin == "" {
		var err error
		if bin, err = drivertest.BuildVMInit(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	cfg := nodenet.Config{Dir: filepath.Join(dir, "network"), Scope: scope, NetNS: h.Path}
	nt, err := nodenet.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nt.Close() })
	n, err := replica.Open(ctx, dir, replica.Options{Attachers: []replica.Attacher{nt}, CgroupParent: "/rungtest/" + scope,
		VM: microvm.Options{AllowEmulated: true, Init: bin}})
	if err != nil {
		t.Fatal(err)
	}
	a := n.VM().Detect(ctx)
	drivertest.RequireVMTier(t, a.Available, a.Reason)
	return &fixture{cfg: cfg, host: h, net: nt, node: n, dir: dir, init: bin}
}

// vmGet fetches url from inside vm replica id (exec in the guest has no
// standard input: the request is piped inside).
func (f *fixture) vmGet(t *testing.T, id, url string, timeout int) (string, bool) {
	t.Helper()
	host, port := hostPort(url)
	var out bytes.Buffer
	script := fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | busybox nc -w %d %s %s`, timeout, host, port)
	code, err := f.node.Exec(t.Context(), id, []string{"sh", "-c", script}, runtime.ExecIO{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("exec in %s: %v", id, err)
	}
	return out.String(), code == 0 && strings.Contains(out.String(), "200 OK")
}

// TestVMTenantNetwork boots one vm replica (real QEMU under TCG) on a
// tenant network in a namespace "node", next to container replicas, and
// proves the tap is routed and filtered like a veth with real packets:
// the same tenant's container and the guest reach each other both ways,
// another tenant's container is refused, the guest reaches neither the
// node's API port nor 169.254.169.254; the tap is the QEMU user's, it
// stays across a new agent's Open (the guest keeps its network) and is
// gone when the replica is removed, and a tagged tap without a record (a
// crash) is removed by the next Open.
func TestVMTenantNetwork(t *testing.T) {
	h, dir, sc := newNode(t)
	f := openVM(t, h, dir, sc)
	f.busybox(t)
	h.serveForbidden(t)
	spec := func(workload string) *network.Spec {
		return &network.Spec{Pool: "10.202.0.0/16", Subnet: "10.202.3.0/24", Workload: workload}
	}
	f.start(t, "acme-web-0", "acme", spec("web"), strings.ReplaceAll(web, "$TENANT_BODY", "acme-web"))
	f.start(t, "acme-cli-0", "acme", spec("cli"), "exec sleep 3600")
	f.start(t, "beta-cli-0", "beta", spec("cli"), "exec sleep 3600")
	// The vm publishes its port: node port 30081 (below).
	vmSpec := spec("vm")
	vmSpec.Ports = []network.Port{{Port: 8080, Protocol: "tcp", NodePort: 30081}}
	vm := vmWeb(vmSpec)
	if err := f.node.Start(t.Context(), vm); err != nil {
		t.Fatalf("start the vm replica: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		_ = f.node.Remove(ctx, vm.ID)
	})
	vmAddr, ok := f.net.Address(vm.ID)
	webAddr, ok2 := f.net.Address("acme-web-0")
	if !ok || !ok2 {
		t.Fatal("no addresses")
	}
	tap := f.net.Iface(vm.ID)
	out := netnstest.Run(t, "ip", "-n", h.Name, "-d", "link", "show", tap)
	if !strings.Contains(out, "tun type tap") {
		t.Errorf("the vm's link %s is not a tap:\n%s", tap, out)
	}
	// The tap's owner is QEMU's uid (TUNSETOWNER), never root.
	st, err := f.node.State(t.Context(), vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	if uid := strings.Fields(procStatus(t, st.Pid, "Uid"))[0]; uid == "0" || !strings.Contains(out, "user "+uid+" ") {
		t.Errorf("tap %s is not owned by QEMU's uid %s:\n%s", tap, uid, out)
	}

	// What rung verify shows: the node's end, the chains on the tap.
	in, ok, err := nodenet.InspectIn(t.Context(), f.cfg, vm.ID, st.Pid, false)
	if err != nil || !ok || !in.Tap || in.Address != vmAddr.String()+"/32" || len(in.Problems) > 0 ||
		!slices.Contains(in.Rules, "out-"+tap+": ip daddr 169.254.0.0/16 drop") {
		t.Errorf("inspection of the vm replica: %+v, %v, %v", in, ok, err)
	}

	// Same tenant: container → guest and guest → container.
	f.reach(t, "acme-cli-0", fmt.Sprintf("http://%s:8080/", vmAddr), "acme-vm")
	f.vmReach(t, vm.ID, fmt.Sprintf("http://%s:8080/", webAddr), "acme-web")
	// Another tenant: refused.
	f.refused(t, "beta-cli-0", fmt.Sprintf("http://%s:8080/", vmAddr))
	// The node's API port (on its address and the gateway) and the
	// metadata address: unreachable from the guest, though they answer.
	if out, err := h.get("http://192.0.2.10:7440/", 30); err != nil || !strings.Contains(out, "node-api") {
		t.Fatalf("the node's own port does not answer on the node: %v %s", err, out)
	}
	if out, err := h.get("http://169.254.169.254/", 30); err != nil || !strings.Contains(out, "metadata") {
		t.Fatalf("the metadata server does not answer on the node: %v %s", err, out)
	}
	for _, u := range []string{"http://192.0.2.10:7440/", "http://10.202.3.1:7440/", "http://169.254.169.254/"} {
		if out, ok := f.vmGet(t, vm.ID, u, 3); ok {
			t.Errorf("the guest fetched %s, want it refused: %q", u, out)
		}
	}

	// Published: the guest's port answers on the node's address and on
	// 127.0.0.1 (route_localnet on the tap, the source rewritten to the
	// gateway), as a container's does.
	for _, a := range []string{"192.0.2.10", "127.0.0.1"} {
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, err := h.get("http://"+a+":30081/", 10)
			if err == nil && strings.Contains(out, "acme-vm") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the vm's published port %s:30081: %v %s", a, err, out)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}

	// A new agent's Open keeps the tap of a replica with a record (its
	// guest still runs) and re-applies the rules.
	open(t, h, dir, sc)
	f.reach(t, "acme-cli-0", fmt.Sprintf("http://%s:8080/", vmAddr), "acme-vm")
	f.refused(t, "beta-cli-0", fmt.Sprintf("http://%s:8080/", vmAddr))

	// Removed: the tap goes with it.
	if err := f.node.Remove(t.Context(), vm.ID); err != nil {
		t.Fatal(err)
	}
	if out := netnstest.Run(t, "ip", "-n", h.Name, "-o", "link"); strings.Contains(out, tap) {
		t.Errorf("tap %s left after the vm replica was removed:\n%s", tap, out)
	}

	// A crash between Attach and the record's removal: a tagged tap with
	// no record is removed by the next Open.
	netnstest.Run(t, "ip", "-n", h.Name, "tuntap", "add", "dev", "rvleftover0", "mode", "tap")
	netnstest.Run(t, "ip", "-n", h.Name, "link", "set", "rvleftover0", "alias", "rung/"+sc+"/gone-0")
	open(t, h, dir, sc)
	if out := netnstest.Run(t, "ip", "-n", h.Name, "-o", "link"); strings.Contains(out, "rvleftover0") {
		t.Errorf("a leftover tap survived Open:\n%s", out)
	}
}

// vmReach polls until vm replica id fetches want from url.
func (f *fixture) vmReach(t *testing.T, id, url, want string) {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		out, ok := f.vmGet(t, id, url, 10)
		if ok && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s could not fetch %s: %s", id, url, out)
		}
		time.Sleep(time.Second)
	}
}

func procStatus(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func vmWeb(net *network.Spec) replica.Spec {
	return replica.Spec{ID: "acme-vm-0", Tenant: "acme", Tier: tenancy.VM, Image: "busybox:latest",
		Args:      []string{"sh", "-c", "echo acme-vm > /tmp/index.html; exec busybox httpd -f -p 8080 -h /tmp"},
		Resources: topology.Resources{MilliCPU: 1000, Memory: 256 << 20, PIDs: 64}, Network: net}
}

// TestVMTenantNetworkAgentKilled: kill -9 of the agent that started a vm
// replica on a tenant network. Its QEMU keeps running with the tap's
// descriptor; the next agent adopts the guest and keeps the tap (the
// record is there), a container of the tenant reaches the guest through
// it, and removing the replica removes the tap.
func TestVMTenantNetworkAgentKilled(t *testing.T) {
	if os.Getenv("RUNG_VM_NET_HELPER") != "" {
		t.Skip("helper process")
	}
	h, dir, sc := newNode(t)
	// The first agent, in this process only to check the tier and build
	// rung-vm (its node is not used after).
	f := openVM(t, h, dir, sc)
	f.busybox(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd, pid := drivertest.StartVMHelper(t, ctx, "TestVMNetHelper",
		"RUNG_VM_NET_HELPER="+dir, "RUNG_VM_NET_NS="+h.Name, "RUNG_VM_NET_SCOPE="+sc, "RUNG_VM_INIT="+f.init)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("qemu %d died with its agent: %v", pid, err)
	}
	tap := f.net.Iface("acme-vm-0")

	// The next agent: adopts the guest, keeps its tap.
	t.Setenv("RUNG_VM_INIT", f.init)
	g := openVM(t, h, dir, sc)
	st, err := g.node.State(ctx, "acme-vm-0")
	if err != nil || st.Status != runtime.Running || st.Pid != pid {
		t.Fatalf("the vm after the agent's restart: %+v, %v; want running as qemu %d", st, err, pid)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		_ = g.node.Remove(ctx, "acme-vm-0")
	})
	g.start(t, "acme-cli-0", "acme", &network.Spec{Pool: "10.202.0.0/16", Subnet: "10.202.3.0/24", Workload: "cli"}, "exec sleep 3600")
	vmAddr, ok := g.net.Address("acme-vm-0")
	if !ok {
		t.Fatal("the vm replica has no address after the restart")
	}
	g.reach(t, "acme-cli-0", fmt.Sprintf("http://%s:8080/", vmAddr), "acme-vm")

	if err := g.node.Remove(ctx, "acme-vm-0"); err != nil {
		t.Fatal(err)
	}
	if out := netnstest.Run(t, "ip", "-n", h.Name, "-o", "link"); strings.Contains(out, tap) {
		t.Errorf("tap %s left after the adopted vm replica was removed:\n%s", tap, out)
	}
}

// TestVMNetHelper is the killed agent of TestVMTenantNetworkAgentKilled:
// it starts the vm replica with its network, prints QEMU's PID and waits.
func TestVMNetHelper(t *testing.T) {
	dir := os.Getenv("RUNG_VM_NET_HELPER")
	if dir == "" {
		t.Skip("run by TestVMTenantNetworkAgentKilled")
	}
	ns := os.Getenv("RUNG_VM_NET_NS")
	h := host{netnstest.Host{Name: ns, Path: "/run/netns/" + ns}}
	f := openVM(t, h, dir, os.Getenv("RUNG_VM_NET_SCOPE"))
	s := vmWeb(&network.Spec{Pool: "10.202.0.0/16", Subnet: "10.202.3.0/24", Workload: "vm"})
	if err := f.node.Start(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	st, err := f.node.State(t.Context(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("QEMU_PID=%d\n", st.Pid)
	select {}
}
