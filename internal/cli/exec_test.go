package cli

import (
	"os"
	"strings"
	"testing"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/server/wire"
)

// TestExecAsUser: `rung exec` into live replicas through the API, as a
// tenant admin would: the container-tier replica's own uid map, seccomp
// filter and no capabilities; gVisor's kernel in the sandbox tier; exit
// codes (127 for a missing program); standard input with -i; another
// tenant's replica is a 404 and a viewer may not exec; each exec is an
// audit event with its command line.
func TestExecAsUser(t *testing.T) {
	startUpWithAgent(t)
	drivertest.RequireBinary(t, "runsc")
	applyOnOneNode(t,
		tenantDoc("rival", "shop", ", isolation: {minimum: sandbox}"),
		sleeperDoc("shop", "web"),
		sleeperDoc("rival", "box"))
	waitReplica(t, "shop/web/0", "running")
	waitReplica(t, "rival/box/0", "running")
	_, shopAdmin, _ := rungCmd(t, "token", "create", "--role", "tenant-admin", "--tenant", "shop")
	_, shopViewer, _ := rungCmd(t, "token", "create", "--role", "tenant-viewer", "--tenant", "shop")
	shopAdmin, shopViewer = strings.TrimSpace(shopAdmin), strings.TrimSpace(shopViewer)

	code, out, stderr := rungCmd(t, "exec", "web", "--token", shopAdmin, "--", "sh", "-c", "cat /proc/self/status /proc/self/uid_map")
	if code != ExitOK {
		t.Fatalf("exec as the tenant admin: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"Seccomp:\t2", "NoNewPrivs:\t1", "CapEff:\t0000000000000000"} {
		if !strings.Contains(out, want) {
			t.Errorf("the exec'd process's status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "         0          0 4294967295") {
		t.Errorf("the exec'd process is in the host's user namespace:\n%s", out)
	}
	if code, _, _ := rungCmd(t, "exec", "shop/web", "--", "sh", "-c", "exit 3"); code != 3 {
		t.Errorf("exit 3 in the replica: rung exec exited %d", code)
	}
	if code, _, stderr := rungCmd(t, "exec", "shop/web", "--", "/bin/nope"); code != 127 || !strings.Contains(stderr, "not found") {
		t.Errorf("a missing program: exit %d, want 127: %s", code, stderr)
	}
	if code, _, stderr := rungCmd(t, "exec", "rival/box", "--token", shopAdmin, "--", "true"); code == ExitOK || !strings.Contains(stderr, "not found") {
		t.Errorf("exec into another tenant's replica: exit %d: %s", code, stderr)
	}
	if code, _, stderr := rungCmd(t, "exec", "shop/web", "--token", shopViewer, "--", "true"); code == ExitOK || !strings.Contains(stderr, "may not exec") {
		t.Errorf("a viewer's exec: exit %d: %s", code, stderr)
	}

	// A terminal through the API takes the client's size.
	cfg, err := client.LoadConfig(os.Getenv(client.ConfigEnv))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg.Server, cfg.Token)
	if err != nil {
		t.Fatal(err)
	}
	// Debian's runc 1.1.5 itself sometimes hands the process a terminal
	// that tcgetattr refuses ("stty: standard input: No such file or
	// directory"), with raw `runc exec -t` too: 13 of 60 runs on this
	// machine under load. That upstream race is retried here, and only it.
	var term strings.Builder
	for try := 0; try < 5; try++ {
		sizes := make(chan wire.TermSize, 1)
		sizes <- wire.TermSize{Width: 120, Height: 33}
		term.Reset()
		code, err = c.Exec(t.Context(), "shop", "web", 0, []string{"/bin/busybox", "stty", "size"}, client.ExecIO{Stdout: &term, Tty: true, Resize: sizes})
		close(sizes)
		if !strings.Contains(term.String(), "stty: standard input: No such file") {
			break
		}
		t.Logf("runc's terminal race, try %d: %q", try+1, term.String())
	}
	if err != nil || code != 0 || strings.TrimSpace(term.String()) != "33 120" {
		t.Errorf("stty size through rung exec -t = %q, code %d, err %v; want 33 120", term.String(), code, err)
	}

	// The sandbox tier runs it inside gVisor's kernel.
	host, _ := os.ReadFile("/proc/version")
	code, out, stderr = rungCmd(t, "exec", "rival/box", "--", "cat", "/proc/version")
	if code != ExitOK || out == string(host) || !strings.HasPrefix(out, "Linux version") {
		t.Errorf("exec in the sandbox: exit %d: %q (host %q) %s", code, out, host, stderr)
	}
	if _, out, _ := rungCmd(t, "get", "events"); !strings.Contains(out, "exec") || !strings.Contains(out, "cat /proc/version") {
		t.Errorf("events lack the exec:\n%s", out)
	}
}
