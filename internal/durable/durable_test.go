package durable_test

import (
	"os"
	"path/filepath"
	"testing"

	"rung.dev/rung/internal/durable"
)

// TestReplace: the file holds the new data with mode 0600, the temporary
// is gone, and a second Replace replaces the first's data.
func TestReplace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meta.json")
	for _, data := range []string{`{"size":1}`, `{}`} {
		if err := durable.Replace(p, []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != data {
			t.Errorf("after Replace(%q): %q, %v", data, got, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
		}
		if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
			t.Errorf("%s.tmp left behind: %v", p, err)
		}
	}
}

// TestWriteFileTruncates: a shorter write leaves nothing of the longer one.
func TestWriteFileTruncates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "replica.json")
	for _, data := range []string{"a longer first record", "short"} {
		if err := durable.WriteFile(p, []byte(data)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != data {
			t.Errorf("after WriteFile(%q): %q, %v", data, got, err)
		}
	}
}
