package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/store/bolt"
)

// runAudit runs `rung audit ARGS` and maps its error to an exit code the
// way Execute does.
func runAudit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newAuditCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(t.Context())
	if err == nil {
		return ExitOK, out.String(), errb.String()
	}
	if s, ok := errors.AsType[silent](err); ok {
		return s.code, out.String(), errb.String()
	}
	fmt.Fprintln(&errb, "rung:", err)
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code, out.String(), errb.String()
	}
	return ExitFailure, out.String(), errb.String()
}

// auditDataDir makes a data directory whose store holds an n-entry log.
func auditDataDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := bolt.Open(dir, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := audit.New(s)
	for i := range n {
		if _, _, err := l.Append(t.Context(), audit.Record{Actor: "admin", Tenant: "acme", Action: "apply", Object: fmt.Sprintf("Workload/acme/w%d", i)},
			store.PutOp(fmt.Sprintf("/tenants/acme/workloads/w%d", i), []byte("{}"), store.Any)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tamper opens the store in dir and runs fn on it.
func tamper(t *testing.T, dir string, fn func(store.Store)) {
	t.Helper()
	s, err := bolt.Open(dir, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fn(s)
}

func TestAuditVerify(t *testing.T) {
	dir := auditDataDir(t, 5)
	code, out, errs := runAudit(t, "verify", "--data-dir", dir)
	if code != ExitOK || !strings.HasPrefix(out, "OK: 5 entries, head 5:") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	head := strings.TrimSpace(strings.TrimPrefix(out, "OK: 5 entries, head "))
	if code, out, _ := runAudit(t, "verify", "--data-dir", dir, "--anchor", head); code != ExitOK {
		t.Fatalf("verify with its own head as anchor: exit %d, %q", code, out)
	}

	// An edited entry.
	tamper(t, dir, func(s store.Store) {
		v, _ := s.Get(t.Context(), audit.Key(2))
		var e audit.Entry
		json.Unmarshal(v.Data, &e)
		e.Actor = "mallory"
		data, _ := json.Marshal(e)
		s.Put(t.Context(), audit.Key(2), data, store.Any)
	})
	code, out, _ = runAudit(t, "verify", "--data-dir", dir)
	if code != ExitFailure || !strings.HasPrefix(out, "BROKEN at entry 2: ") || !strings.Contains(out, audit.Key(2)) {
		t.Fatalf("after an edit: exit %d, stdout %q", code, out)
	}
}

func TestAuditVerifyAnchor(t *testing.T) {
	dir := auditDataDir(t, 4)
	_, out, _ := runAudit(t, "verify", "--data-dir", dir)
	head := strings.TrimSpace(strings.TrimPrefix(out, "OK: 4 entries, head "))
	// Drop the last entry and rewrite the head: the chain alone is fine...
	tamper(t, dir, func(s store.Store) {
		v, _ := s.Get(t.Context(), audit.Key(3))
		var e audit.Entry
		json.Unmarshal(v.Data, &e)
		s.Delete(t.Context(), audit.Key(4), store.Any)
		h, _ := json.Marshal(audit.Head{Seq: 3, Hash: e.Hash})
		s.Put(t.Context(), audit.HeadKey, h, store.Any)
	})
	if code, out, _ := runAudit(t, "verify", "--data-dir", dir); code != ExitOK || !strings.HasPrefix(out, "OK: 3 entries") {
		t.Fatalf("without anchor: exit %d, %q", code, out)
	}
	// ...but not against the head kept from before.
	code, out, _ := runAudit(t, "verify", "--data-dir", dir, "--anchor", head)
	if code != ExitFailure || !strings.HasPrefix(out, "BROKEN at entry 4: ") {
		t.Fatalf("with anchor %s: exit %d, %q", head, code, out)
	}
}

func TestAuditVerifyErrors(t *testing.T) {
	// A store in use by a running rung.
	dir := auditDataDir(t, 1)
	s, err := bolt.Open(dir, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs := runAudit(t, "verify", "--data-dir", dir)
	s.Close()
	if code != ExitFailure || !strings.Contains(errs, "in use") {
		t.Fatalf("store in use: exit %d, stderr %q", code, errs)
	}

	// No store at all.
	code, _, errs = runAudit(t, "verify", "--data-dir", filepath.Join(t.TempDir(), "none"))
	if code != ExitFailure || errs == "" {
		t.Fatalf("missing store: exit %d, stderr %q", code, errs)
	}

	// A damaged store file is reported, naming it.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, bolt.DBFile), []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runAudit(t, "verify", "--data-dir", bad)
	if code != ExitFailure || !strings.Contains(errs, "data corrupt") || !strings.Contains(errs, filepath.Join(bad, bolt.DBFile)) {
		t.Fatalf("damaged store: exit %d, stderr %q", code, errs)
	}

	// A malformed anchor is a usage error.
	if code, _, _ := runAudit(t, "verify", "--data-dir", dir, "--anchor", "nope"); code != ExitInvalid {
		t.Fatalf("bad anchor: exit %d, want %d", code, ExitInvalid)
	}
}
