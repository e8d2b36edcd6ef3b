package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/verify"
)

// runVerifyCmd runs `rung verify args...` as Execute would once the
// command is wired into the root, and returns the exit code and output.
func runVerifyCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runSubcommand(t, newVerifyCmd(), args...)
}

// runSubcommand runs a subcommand under a bare root command with Execute's
// exit-code rules (for commands the lead has not wired into root.go yet).
func runSubcommand(t *testing.T, sub *cobra.Command, args ...string) (int, string, string) {
	t.Helper()
	root := &cobra.Command{Use: "rung", SilenceUsage: true, SilenceErrors: true}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(ExitInvalid, err) })
	root.AddCommand(sub)
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{sub.Name()}, args...))
	err := root.ExecuteContext(t.Context())
	code := ExitOK
	if s, ok := errors.AsType[silent](err); ok {
		code = s.code
	} else if e, ok := errors.AsType[*exitError](err); ok {
		code = e.code
		errb.WriteString(err.Error())
	} else if err != nil {
		code = ExitFailure
		errb.WriteString(err.Error())
	}
	return code, out.String(), errb.String()
}

// fixtureReplica builds a Replica from the verify package's fixture /proc
// trees, as verify.Host.Replica would from a live driver.
func fixtureReplica(t *testing.T, fixture, id, tier string, procs map[int]string, expect verify.Expectation) verify.Replica {
	t.Helper()
	h := verify.Host{FS: os.DirFS(filepath.Join("..", "verify", "testdata", fixture))}
	r := verify.Replica{ID: id, Tier: tier, Status: runtime.Running}
	for _, pid := range []int{4242, 5100, 5101, 5102, 777} {
		role, ok := procs[pid]
		if !ok {
			continue
		}
		rep, err := h.Inspect(t.Context(), pid)
		if err != nil {
			t.Fatal(err)
		}
		if r.Pid == 0 {
			r.Pid = pid
		}
		e := expect
		e.Role = role
		r.Processes = append(r.Processes, verify.Process{Role: role, Report: rep})
		r.Findings = append(r.Findings, verify.Check(rep, e)...)
	}
	return r
}

func TestVerifyTable(t *testing.T) {
	ok := fixtureReplica(t, "runc", "acme-web-0", "container", map[int]string{4242: verify.RoleInit},
		verify.Expectation{Tier: "container", NoSwap: true, MemoryLimit: 64 << 20, PidsLimit: 32, CPUQuota: 50000, CPUPeriod: 100000})
	sb := fixtureReplica(t, "runsc", "bank-db-0", "sandbox", map[int]string{5100: verify.RoleSandbox, 5101: verify.RoleStub, 5102: verify.RoleGofer},
		verify.Expectation{Tier: "sandbox", NoSwap: true})
	sb.HostSide, sb.Inside = []string{"host side"}, []string{"inside gVisor"}
	bad := fixtureReplica(t, "privileged", "evil-0", "container", map[int]string{777: verify.RoleInit},
		verify.Expectation{Tier: "container", NoSwap: true})
	oom := verify.Replica{ID: "acme-oom", Tier: "container", Status: runtime.Stopped,
		Resources: verify.Resources{MemoryLimit: 64 << 20, PidsLimit: 32, CPUQuota: 50000, CPUPeriod: 100000, OOMKills: 1}}
	noSpec := verify.Replica{ID: "acme-lost", Tier: "container", Status: runtime.Running, Pid: 99,
		Problems: []string{"spec: read bundle /x: no such file"}}

	var b bytes.Buffer
	printVerifyTable(&b, []verify.Replica{ok, sb, bad, oom, noSpec})
	got := b.String()
	t.Logf("\n%s", got)
	for _, re := range []string{
		`(?m)^ID +TIER +PROCESS +PID +UID MAP +CAPEFF +NNP +SECCOMP +RO-ROOT +MEMORY +PIDS +CPU +VERDICT$`,
		`(?m)^acme-web-0 +container +init +4242 +0→1245184\+65536 +0000000000000000 +1 +2 +true +64Mi +32 +500m +ok$`,
		`(?m)^bank-db-0 +sandbox +sandbox +5100 +65534→65534\+1 +0000000000240000 +1 +2 +true +128Mi +64 +250m +ok$`,
		`(?m)^ +stub +5101 +65534→65534\+1 `,
		`(?m)^ +gofer +5102 +0→1310720\+65536 +000000000004001f +1 +2 +true +128Mi +64 +250m +$`,
		`(?m)^evil-0 +container +init +777 +0→0\+4294967295 +000001ffffffffff +0 +0 +false +unlimited +unlimited +unlimited +FAIL \(13\)$`,
		`(?m)^acme-oom +container +- +0 +- .* 64Mi +32 +500m +stopped, OOM-killed$`,
		`(?m)^acme-lost +container +- +99 +- .* \? +\? +\? +FAIL \(1\)$`,
		`(?m)^FAIL evil-0 init pid 777 no-new-privs: got 0, want 1$`,
		`(?m)^FAIL evil-0 init pid 777 no-host-mounts: got .*/var/run/docker.sock`,
		`(?m)^FAIL acme-lost: spec: read bundle /x: no such file$`,
		`(?m)^enforced by gVisor inside the sandbox \(not visible from the host\):\n  - inside gVisor$`,
	} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("output lacks %s", re)
		}
	}
	if strings.Contains(got, "FAIL acme-web-0") || strings.Contains(got, "FAIL bank-db-0") || strings.Contains(got, "FAIL acme-oom") {
		t.Error("a hardened replica has failures")
	}

	b.Reset()
	printVerifyTable(&b, nil)
	if b.String() != "no replicas\n" {
		t.Errorf("empty table = %q", b.String())
	}
}

// TestVerifyLive runs `rung verify` against real runc and runsc replicas
// under a data directory laid out as internal/replica lays it out.
func TestVerifyLive(t *testing.T) {
	drivertest.RequireRoot(t)
	data := drivertest.SearchableTempDir(t)
	for _, c := range []struct{ kind, id, tier string }{
		{"runc", "verify-cli-web", "container"},
		{"runsc", "verify-cli-db", "sandbox"},
	} {
		drivertest.RequireBinary(t, c.kind)
		d, err := newInspectDriver(c.kind, filepath.Join(data, "runtimes", c.kind), "")
		if err != nil {
			t.Fatal(err)
		}
		dir := drivertest.BusyboxBundle(t, drivertest.Range(t, 50), drivertest.Shell("sleep 300"), drivertest.Cgroups(c.id),
			bundle.WithResources(250, 128<<20, 96),
			bundle.WithAnnotations(map[string]string{verify.AnnotationTenant: "acme", verify.AnnotationTier: c.tier}))
		drivertest.Started(t, d, c.id, dir)
	}

	code, out, errs := runVerifyCmd(t, "--data-dir", data)
	t.Logf("\n%s%s", out, errs)
	if code != ExitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, re := range []string{
		// The sentry runs as the tenant's nobody (4325376+65534), not the
		// host's (issue 19): ok, and its host uid said.
		`(?m)^verify-cli-db +sandbox +sandbox +\d+ +65534→4390910\+1 +0000000000240000 +1 +2 +true +128Mi +96 +250m +ok$`,
		`(?m)^sentry verify-cli-db: host uid 4390910$`,
		`(?m)^ +gofer +\d+ +0→4325376\+65536 +000000000004001f +1 +2 +true +128Mi +96 +250m +$`,
		`(?m)^verify-cli-web +container +init +\d+ +0→4325376\+65536 +0000000000000000 +1 +2 +true +128Mi +96 +250m +ok$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s", re)
		}
	}

	code, out, _ = runVerifyCmd(t, "--root", data, "verify-cli-web", "-o", "json")
	if code != ExitOK {
		t.Fatalf("json: exit %d", code)
	}
	var doc struct{ Replicas []verify.Replica }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Replicas) != 1 || doc.Replicas[0].ID != "verify-cli-web" || !doc.Replicas[0].Holds() || doc.Replicas[0].Tenant != "acme" {
		t.Errorf("json replicas = %+v, want verify-cli-web of acme, holding", doc.Replicas)
	}

	if code, _, errs := runVerifyCmd(t, "--data-dir", data, "nope"); code != ExitFailure || !strings.Contains(errs, `no replica "nope"`) {
		t.Errorf("unknown id: exit %d, %q", code, errs)
	}
	if code, out, _ := runVerifyCmd(t, "--data-dir", t.TempDir()); code != ExitOK || out != "no replicas\n" {
		t.Errorf("empty data dir: exit %d, %q", code, out)
	}
	if code, _, _ := runVerifyCmd(t, "-o", "yaml"); code != ExitInvalid {
		t.Errorf("-o yaml: exit %d, want %d", code, ExitInvalid)
	}
}

// TestVerifyLiveFails: a replica that claims the sandbox tier but runs in
// runc, with a writable root, fails, and verify exits 1.
func TestVerifyLiveFails(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	data := drivertest.SearchableTempDir(t)
	d, err := newInspectDriver("runc", filepath.Join(data, "runtimes", "runc"), "")
	if err != nil {
		t.Fatal(err)
	}
	const id = "verify-cli-liar"
	dir := drivertest.BusyboxBundle(t, drivertest.Range(t, 51), drivertest.Shell("sleep 300"), drivertest.Cgroups(id),
		bundle.WithAnnotations(map[string]string{verify.AnnotationTier: "sandbox"}))
	spec, err := bundle.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	spec.Root.Readonly = false
	if err := bundle.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	drivertest.Started(t, d, id, dir)
	code, out, errs := runVerifyCmd(t, "--data-dir", data)
	t.Logf("\n%s%s", out, errs)
	if code != ExitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"FAIL " + id + " init pid ",
		" tier: got container (host kernel, own user namespace), want sandbox",
		" read-only-root: got / ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
