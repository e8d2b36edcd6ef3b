package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokenCommands: token create with --name and --ttl, list, revoke and
// rotate-admin through the command line against `rung up`.
func TestTokenCommands(t *testing.T) {
	data, _ := startUp(t)
	if code, _, errs := rungCmd(t, "apply", "-f", "../../examples/university"); code != 0 {
		t.Fatalf("apply: %s", errs)
	}
	// A page at a time.
	code, out, errs := rungCmd(t, "get", "workloads", "--limit", "2")
	if code != 0 || !strings.Contains(errs, "more: add --continue ") || strings.Count(out, "\n") != 3 {
		t.Fatalf("get --limit 2: %d\n%s\n%s", code, out, errs)
	}
	cont := strings.TrimSpace(errs[strings.Index(errs, "--continue ")+len("--continue "):])
	if code, out2, errs := rungCmd(t, "get", "workloads", "--limit", "2", "--continue", cont); code != 0 || out2 == out {
		t.Errorf("next page: %d\n%s\n%s", code, out2, errs)
	}
	code, tok, errs := rungCmd(t, "token", "create", "--role", "tenant-admin", "--tenant", "biology", "--name", "ci", "--ttl", "30d")
	if code != 0 || !strings.Contains(errs, "expires ") {
		t.Fatalf("token create: %d %s", code, errs)
	}
	tok = strings.TrimSpace(tok)
	id := strings.Split(tok, "_")[1]
	if code, _, errs := rungCmd(t, "token", "create", "--role", "tenant-admin", "--tenant", "biology", "--ttl", "forever"); code == 0 || !strings.Contains(errs, "ttl") {
		t.Errorf("bad ttl: %d %s", code, errs)
	}
	code, out, errs = rungCmd(t, "token", "list")
	if code != 0 {
		t.Fatalf("token list: %s", errs)
	}
	row := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, id) {
			row = strings.Join(strings.Fields(l), " ")
		}
	}
	if !strings.HasPrefix(row, id+" ci tenant-admin tenant biology ") || !strings.HasSuffix(row, " active") || !strings.Contains(out, "(admin)") {
		t.Errorf("token list:\n%s", out)
	}
	if strings.Contains(out, tok) {
		t.Error("token list shows a secret")
	}
	if code, _, errs := rungCmd(t, "get", "workloads", "--token", tok); code != 0 {
		t.Fatalf("new token: %s", errs)
	}
	if code, _, errs := rungCmd(t, "token", "revoke", id); code != 0 {
		t.Fatalf("revoke: %s", errs)
	}
	if code, _, errs := rungCmd(t, "get", "workloads", "--token", tok); code == 0 || !strings.Contains(errs, "revoked") {
		t.Errorf("revoked token: %d %s", code, errs)
	}

	before, _ := os.ReadFile(filepath.Join(data, "admin.token"))
	code, newTok, errs := rungCmd(t, "token", "rotate-admin")
	if code != 0 {
		t.Fatalf("rotate-admin: %s", errs)
	}
	after, _ := os.ReadFile(filepath.Join(data, "admin.token"))
	if strings.TrimSpace(string(after)) != strings.TrimSpace(newTok) || string(after) == string(before) {
		t.Errorf("admin.token not rewritten")
	}
	if code, _, errs := rungCmd(t, "get", "workloads", "--token", strings.TrimSpace(string(before))); code == 0 || !strings.Contains(errs, "invalid bearer token") {
		t.Errorf("old admin token: %d %s", code, errs)
	}
	// The client config rung up wrote has the new token: plain commands work.
	if code, _, errs := rungCmd(t, "get", "workloads"); code != 0 {
		t.Errorf("after rotation with the client config: %s", errs)
	}
}
