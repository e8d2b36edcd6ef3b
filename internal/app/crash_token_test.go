package app_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

// TestRevokedTokenSurvivesCrash: a revoke acknowledged just before a
// kill -9 of `rung up` holds after the restart, and so do a token and a
// secret made just before it.
func TestRevokedTokenSurvivesCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var child *exec.Cmd
	start := func() *client.Client {
		t.Helper()
		os.Remove(filepath.Join(dir, "client.json")) // wait for the new one
		var c *client.Client
		child, c = startCrashChild(t, dir)
		return c
	}
	kill := func() {
		_ = child.Process.Signal(syscall.SIGKILL)
		_, _ = child.Process.Wait()
	}
	t.Cleanup(kill)
	ctx := t.Context()
	op := start()
	tenant := &v1.Tenant{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindTenant}, Metadata: v1.ObjectMeta{Name: "chem"}}
	if _, err := op.Apply(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	revoked, err := op.NewToken(ctx, wire.TokenRequest{Role: "tenant-viewer", Tenant: "chem"})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := op.NewToken(ctx, wire.TokenRequest{Role: "tenant-viewer", Tenant: "chem"})
	if err != nil {
		t.Fatal(err)
	}
	sec := &v1.Secret{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindSecret},
		Metadata: v1.ObjectMeta{Name: "db", Tenant: "chem"}, Spec: v1.SecretSpec{Data: map[string]string{"password": "p4ss"}}}
	if _, err := op.ApplySecret(ctx, sec); err != nil {
		t.Fatal(err)
	}
	before, err := op.GetSecret(ctx, "chem", "db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.RevokeToken(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	kill() // right after the acknowledgement

	op = start()
	// The secret is there, sealed under a keyring that survived too: the
	// same digest, and applying the same value again changes nothing.
	after, err := op.GetSecret(ctx, "chem", "db")
	if err != nil || len(after.Keys) != 1 || after.Keys[0] != before.Keys[0] {
		t.Errorf("secret after kill -9: %+v %v (before %+v)", after, err, before)
	}
	if res, err := op.ApplySecret(ctx, sec); err != nil || res.Result != wire.Unchanged {
		t.Errorf("same secret again after kill -9: %+v %v", res, err)
	}
	for tok, want := range map[string]error{revoked.Token: client.ErrUnauthorized, kept.Token: nil} {
		c, _ := client.New(op.Server(), tok)
		if _, err := c.WhoAmI(ctx); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("after kill -9: %v, want %v", err, want)
		}
	}
}

// startCrashChild runs TestCrashChild (`rung up` on dir) in a child
// process with env added, and waits until it serves.
func startCrashChild(t *testing.T, dir string, env ...string) (*exec.Cmd, *client.Client) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	child.Env = append(append(os.Environ(), crashDirEnv+"="+dir), env...)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := waitReady(t, dir)
	if err != nil {
		_ = child.Process.Kill()
		_, _ = child.Process.Wait()
		t.Fatal(err)
	}
	return child, c
}
