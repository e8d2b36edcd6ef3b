package v1

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzDecode checks that no input makes Decode panic, that every error is a
// *FieldError, and that a decoded set validates the same way every time
// without being changed by it.
func FuzzDecode(f *testing.F) {
	err := filepath.WalkDir("testdata", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !isManifest(p) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f.Add(data, strings.HasSuffix(p, ".json"))
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		name := "fuzz.yaml"
		if asJSON {
			name = "fuzz.json"
		}
		s, err := Decode(name, data)
		fieldErrors(t, err)
		if s == nil {
			t.Fatal("Decode returned a nil Set")
		}
		before := cloneSet(t, s)
		first := errString(s.Validate())
		if diff := cmp.Diff(before, s, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Validate changed the set (-before +after):\n%s", diff)
		}
		s.ApplyDefaults()
		if second := errString(s.Validate()); first != second {
			t.Fatalf("Validate is not deterministic:\n%s\n---\n%s", first, second)
		}
		fieldErrors(t, s.Validate())
		s.Levels()
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// cloneSet deep-copies a set through JSON.
func cloneSet(t *testing.T, s *Set) *Set {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var c Set
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}
