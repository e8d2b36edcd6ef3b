package runtime_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

// TestRunscSandboxNetNS: runsc runs as root of the tenant's user
// namespace, so a sandbox network (--network=sandbox) must be a network
// namespace that user namespace owns. SandboxNetNS makes it; host root
// puts a link with an address in it, and the workload sees that address.
// Control: a namespace made by host root (ip netns add) is refused by the
// kernel, with a clear error, and the sandbox does not run.
func TestRunscSandboxNetNS(t *testing.T) {
	drivertest.RequireBinary(t, "ip")
	d := newRunsc(t, runtime.Config{Network: "sandbox"})
	r := drivertest.Range(t, 13)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	withNetNS := func(id, path string) string {
		dir := drivertest.BusyboxBundle(t, r, drivertest.Shell("ip addr show dev sbns1 && echo ran"), drivertest.Cgroups(id))
		editSpec(t, dir, func(l map[string]any) {
			for _, n := range l["namespaces"].([]any) {
				if m := n.(map[string]any); m["type"] == string(specs.NetworkNamespace) {
					m["path"] = path
				}
			}
		})
		return dir
	}

	const id = "sbnetns"
	path, err := d.SandboxNetNS(t.Context(), id, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Delete(t.Context(), id) }) // ends the holder if Run did not
	pid := strings.TrimSuffix(strings.TrimPrefix(path, "/proc/"), "/ns/net")
	ip("link", "add", "sbns0", "type", "veth", "peer", "name", "sbns1")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "sbns0").Run() })
	ip("link", "set", "sbns1", "netns", pid)
	in := func(args ...string) {
		t.Helper()
		cmd := exec.Command("nsenter", append([]string{"--net=" + path, "ip"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ip %v in %s: %v\n%s", args, path, err, out)
		}
	}
	in("addr", "add", "10.99.0.2/24", "dev", "sbns1")
	in("link", "set", "sbns1", "up")
	in("link", "set", "lo", "up")
	var out, errb bytes.Buffer
	exit, err := runtime.Run(t.Context(), d, id, withNetNS(id, path), runtime.IO{Stdout: &out, Stderr: &errb})
	switch {
	case err == nil:
		if exit.Code != 0 || !strings.Contains(out.String(), "10.99.0.2/24") || !strings.Contains(out.String(), "ran\n") {
			t.Fatalf("run in the sandbox network namespace: %+v\nstdout: %s\nstderr: %s", exit, out.String(), errb.String())
		}
	case strings.Contains(err.Error(), rootNSCheck):
		// This runsc (2022) tells the root network namespace by
		// /proc/sys/net/core/rmem_default, which kernels since 6.x show in
		// every network namespace: its sandbox network fails after it
		// joined the namespace, as host root too. The join (what this
		// test is about) happened.
		t.Logf("runsc joined the namespace, then refused its sandbox network: %v", err)
	default:
		t.Fatalf("run in the sandbox network namespace: %+v, %v\nstdout: %s\nstderr: %s", exit, err, out.String(), errb.String())
	}
	if hs := holders(id); len(hs) != 0 {
		t.Errorf("holders left after the run: %v", hs)
	}

	// Control: a network namespace of the host's user namespace.
	const name = "rung-sbns-host"
	ip("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	out.Reset()
	errb.Reset()
	_, err = runtime.Run(t.Context(), d, "sbnetns-host", withNetNS("sbnetns-host", "/var/run/netns/"+name), runtime.IO{Stdout: &out, Stderr: &errb})
	if err == nil || !strings.Contains(err.Error(), "setting namespace of type network") ||
		!strings.Contains(err.Error(), "operation not permitted") || strings.Contains(out.String(), "ran") {
		t.Fatalf("run in a host-made network namespace: %v, output %q; want refused (EPERM)", err, out.String())
	}
}

// rootNSCheck is this runsc's error when it takes the namespace it joined
// for the host's (see TestRunscSandboxNetNS).
const rootNSCheck = "cannot run with network enabled in root network namespace"
