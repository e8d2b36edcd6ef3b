package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretCommands: secret set (arguments and files), get shows keys
// and digests only, list, rotate-key, delete, against `rung up`.
func TestSecretCommands(t *testing.T) {
	data, _ := startUp(t)
	if code, _, errs := rungCmd(t, "apply", "-f", "../../examples/university"); code != 0 {
		t.Fatalf("apply: %s", errs)
	}
	keyFile := filepath.Join(t.TempDir(), "tls.key")
	os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\nsecret-bytes\n"), 0o600)
	code, out, errs := rungCmd(t, "secret", "set", "biology/db", "password=s3cr3t-value", "--from-file", "tls.key="+keyFile)
	if code != 0 || !strings.Contains(out, "secret biology/db created") {
		t.Fatalf("secret set: %d %s %s", code, out, errs)
	}
	code, out, errs = rungCmd(t, "secret", "get", "biology/db")
	if code != 0 || strings.Contains(out, "s3cr3t-value") || strings.Contains(out, "secret-bytes") || !strings.Contains(out, "password") || !strings.Contains(out, "hmac-sha256:") {
		t.Errorf("secret get: %d\n%s%s", code, out, errs)
	}
	if code, out, _ := rungCmd(t, "secret", "list"); code != 0 || !strings.Contains(out, "password,tls.key") {
		t.Errorf("secret list: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "secret", "rotate-key"); code != 0 || !strings.Contains(out, "1 secret(s) sealed again") {
		t.Errorf("rotate-key: %d %s", code, out)
	}
	if fi, err := os.Stat(filepath.Join(data, "secrets.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keyring file: %v %v", fi, err)
	}
	if code, _, errs := rungCmd(t, "secret", "set", "biology/db", "no-equals-sign"); code != ExitInvalid || strings.Contains(errs, "no-equals-sign") {
		t.Errorf("bad argument: %d %s", code, errs)
	}
	if code, _, errs := rungCmd(t, "secret", "delete", "biology/db"); code != 0 {
		t.Errorf("delete: %s", errs)
	}

	// kind: Secret in manifests: rung apply and rung delete.
	manifest := filepath.Join(t.TempDir(), "secret.yaml")
	os.WriteFile(manifest, []byte("apiVersion: rung.dev/v1\nkind: Secret\nmetadata: {name: api, tenant: biology}\nspec:\n  data: {token: manifest-value}\n"), 0o600)
	if code, out, errs := rungCmd(t, "apply", "-f", manifest); code != 0 || !strings.Contains(out, "created") {
		t.Fatalf("apply a Secret: %d %s %s", code, out, errs)
	}
	if code, out, _ := rungCmd(t, "secret", "get", "biology/api"); code != 0 || !strings.Contains(out, "token") || strings.Contains(out, "manifest-value") {
		t.Errorf("applied secret: %d %s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: rung.dev/v1\nkind: Secret\nmetadata: {name: x, tenant: biology}\nspec:\n  data: {../escape: v}\n"), 0o600)
	if code, _, errs := rungCmd(t, "apply", "-f", bad); code == 0 || !strings.Contains(errs, "bad.yaml:") || !strings.Contains(errs, "spec.data") {
		t.Errorf("bad Secret manifest: %d %s", code, errs)
	}
	if code, out, errs := rungCmd(t, "delete", "-f", manifest); code != 0 {
		t.Errorf("delete -f: %d %s %s", code, out, errs)
	}
	if code, _, _ := rungCmd(t, "secret", "get", "biology/api"); code == 0 {
		t.Error("secret still there after delete -f")
	}
}
