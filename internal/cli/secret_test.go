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
}
