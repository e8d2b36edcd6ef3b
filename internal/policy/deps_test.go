package policy

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestPure keeps the decision package free of I/O: it may not import the
// file system, network, process or registry packages; facts come in as
// values from the I/O packages.
func TestPure(t *testing.T) {
	forbidden := []string{"os", "os/exec", "net", "net/http", "syscall", "io/ioutil", "path/filepath",
		"github.com/google/go-containerregistry/pkg/v1/remote", "rung.dev/rung/internal/image",
		"rung.dev/rung/internal/scan", "rung.dev/rung/internal/vulndb", "rung.dev/rung/internal/sign"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if slices.Contains(forbidden, p) {
				t.Errorf("%s imports %s: policy decides, it does no I/O", f, p)
			}
		}
	}
}
