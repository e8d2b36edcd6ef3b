// Package rpmtest builds real rpm databases for tests: packages made by
// Debian's rpmbuild, installed by rpm into a SQLite database, and the same
// headers loaded by Berkeley DB's db_load into a Packages file of the
// format rpm used before SQLite. Tests skip with the reason when rpm or
// Berkeley DB's tools are missing (make test installs them).
package rpmtest

import (
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/glebarez/go-sqlite" // registers "sqlite"
)

// Specs are the packages: one with an epoch and a subpackage of
// another name (so source and binary names differ), one without, and one
// whose long description makes its header span Berkeley DB overflow
// pages.
var Specs = map[string]string{
	"rung-hello": `Name: rung-hello
Version: 1.2.3
Release: 4.el9
Epoch: 2
Summary: hello
License: MIT
BuildArch: noarch
%description
hello
%package -n libhello
Summary: hello library
%description -n libhello
library
%files
%files -n libhello
`,
	"rung-tools": `Name: rung-tools
Version: 0.9
Release: 1.el9
Summary: tools
License: MIT
BuildArch: noarch
%description
tools
%files
`,
	"rung-big": `Name: rung-big
Version: 10.0.1
Release: 7.el9_2
Summary: big header
License: MIT
BuildArch: noarch
%description
` + strings.Repeat("A description long enough to need several Berkeley DB pages. ", 300) + `
%files
`,
}

// NeedTools skips t unless every named command is installed.
func NeedTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (make test installs rpm and db5.3-util): %v", n, err)
		}
	}
}

// Run runs a command and returns its output, failing t when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Build builds the packages and installs them into a fresh SQLite
// rpm database; it returns the database directory.
func Build(t testing.TB) string {
	t.Helper()
	NeedTools(t, "rpm", "rpmbuild")
	top := t.TempDir()
	for name, spec := range Specs {
		f := filepath.Join(top, name+".spec")
		if err := os.WriteFile(f, []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		Run(t, "rpmbuild", "--define", "_topdir "+top, "--quiet", "-bb", f)
	}
	rpms, _ := filepath.Glob(filepath.Join(top, "RPMS", "noarch", "*.rpm"))
	if len(rpms) != 4 {
		t.Fatalf("built %q, want 4 packages", rpms)
	}
	dbpath := filepath.Join(t.TempDir(), "rpm")
	Run(t, "rpm", "--dbpath", dbpath, "--initdb")
	Run(t, "rpm", append([]string{"--dbpath", dbpath, "-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch", "--ignoreos"}, rpms...)...)
	return dbpath
}

// BerkeleyDB turns the SQLite database's header blobs into a Berkeley DB
// hash database with db_load, keyed by instance number as rpm's
// Packages file is, and checks that rpm reads it back.
func BerkeleyDB(t testing.TB, dbpath string) string {
	t.Helper()
	load := "db5.3_load"
	if _, err := exec.LookPath(load); err != nil {
		load = "db_load"
	}
	NeedTools(t, load)
	db, err := sql.Open("sqlite", filepath.Join(dbpath, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT hnum, blob FROM Packages ORDER BY hnum")
	if err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	in.WriteString("VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize=4096\nHEADER=END\n")
	for rows.Next() {
		var (
			hnum uint32
			blob []byte
		)
		if err := rows.Scan(&hnum, &blob); err != nil {
			t.Fatal(err)
		}
		key := binary.NativeEndian.AppendUint32(nil, hnum)
		fmt.Fprintf(&in, " %s\n %s\n", hex.EncodeToString(key), hex.EncodeToString(blob))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	in.WriteString("DATA=END\n")
	bdb := filepath.Join(t.TempDir(), "rpm")
	if err := os.Mkdir(bdb, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(load, filepath.Join(bdb, "Packages"))
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", load, err, out)
	}
	return bdb
}
