package app

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportRules: only this package names store backends; auth is pure
// (no I/O packages); the server, client and CLI reach the store only
// through the interface.
func TestImportRules(t *testing.T) {
	const mod = "rung.dev/rung/"
	backends := []string{mod + "internal/store/bolt", mod + "internal/store/etcd"}
	for _, rule := range []struct {
		dir       string
		forbidden []string
	}{
		{"../auth", append([]string{"net", "net/http", "os", mod + "internal/store", mod + "internal/server"}, backends...)},
		{"../server", append([]string{mod + "internal/app", mod + "internal/cli", mod + "internal/client"}, backends...)},
		{"../server/wire", []string{mod + "internal/store", mod + "internal/server"}},
		{"../client", append([]string{mod + "internal/server", mod + "internal/store"}, backends...)},
		{"../cli/up.go", backends},
		{"../cli/apply.go", append([]string{mod + "internal/server", mod + "internal/store"}, backends...)},
		{"../cli/token.go", backends},
		{"../cli/clientconfig.go", backends},
	} {
		files := []string{rule.dir}
		if fi, err := os.Stat(rule.dir); err != nil {
			t.Fatal(err)
		} else if fi.IsDir() {
			files, _ = filepath.Glob(filepath.Join(rule.dir, "*.go"))
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range rule.forbidden {
					if p == bad {
						t.Errorf("%s imports %s", f, p)
					}
				}
			}
		}
	}
}
