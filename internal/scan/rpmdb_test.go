package scan

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/scan/rpmtest"
)

// The rpm tests build real packages with Debian's rpmbuild, install them
// into real databases with rpm, and take rpm's own query output as the
// truth the reader must match. Debian's rpm writes SQLite and reads
// Berkeley DB (bdb_ro); the Berkeley DB file is made by Berkeley DB's own
// db_load from rpm's header blobs and proven with rpm before rung reads
// it. rpm here can't write NDB, so NDB is SUSE's real database from
// go-rpmdb's module (see TestReadRPMDatabaseNDB).

// rpmTruth is what rpm itself says is installed, in rung's terms.
func rpmTruth(t *testing.T, dbpath, backend, ecosystem string) []policy.Package {
	t.Helper()
	out := rpmtest.Run(t, "rpm", "--define", "_db_backend "+backend, "--dbpath", dbpath, "-qa",
		"--qf", `%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{SOURCERPM}\n`)
	var want []policy.Package
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 || strings.HasPrefix(f[0], "warning") {
			continue
		}
		src, _ := srpmName(f[2])
		want = append(want, policy.Package{Name: f[0], Version: f[1], Ecosystem: ecosystem, DB: DBRPM, Source: src, SourceVersion: f[1]})
	}
	if len(want) != 4 {
		t.Fatalf("rpm -qa listed %d packages, want 4:\n%s", len(want), out)
	}
	return dedupe(want)
}

func TestReadRPMDatabaseSQLite(t *testing.T) {
	dbpath := rpmtest.Build(t)
	want := rpmTruth(t, dbpath, "sqlite", "AlmaLinux:9")
	// TMPDIR of mode 0700, as t.TempDir makes: the child, as nobody,
	// must still get into its own directory below it.
	t.Setenv("TMPDIR", t.TempDir())
	got, err := ReadRPMDatabase(t.Context(), filepath.Join(dbpath, "rpmdb.sqlite"), "AlmaLinux:9")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, dedupe(got)); diff != "" {
		t.Errorf("packages (-rpm -qa +rung):\n%s", diff)
	}
	if src := want[0]; src.Name != "libhello" || src.Source != "rung-hello" || src.Version != "2:1.2.3-4.el9" {
		t.Errorf("fixture lost its point: first package %+v, want libhello of source rung-hello at 2:1.2.3-4.el9", src)
	}
}

func TestReadRPMDatabaseBerkeleyDB(t *testing.T) {
	dbpath := rpmtest.Build(t)
	bdb := rpmtest.BerkeleyDB(t, dbpath)
	want := rpmTruth(t, bdb, "bdb_ro", "Red Hat")
	got, err := ReadRPMDatabase(t.Context(), filepath.Join(bdb, "Packages"), "Red Hat")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, dedupe(got)); diff != "" {
		t.Errorf("packages (-rpm -qa +rung):\n%s", diff)
	}
}

// TestReadRPMDatabaseNDB reads openSUSE's NDB format from a real SUSE BCI
// image's database, which go-rpmdb's module ships as test data. The
// expected packages were read off the file with strings(1), not with the
// code under test.
func TestReadRPMDatabaseNDB(t *testing.T) {
	path := moduleFile(t, "github.com/knqyf263/go-rpmdb", "pkg/testdata/sle15-bci/Packages.db")
	got, err := ReadRPMDatabase(t.Context(), path, "SUSE:Linux Enterprise Server 15")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]policy.Package{}
	for _, p := range got {
		have[p.Name] = p
	}
	// strings(1) shows each header's NAME, VERSION and RELEASE in a row.
	for name, version := range map[string]string{"glibc": "2.31-9.3.2", "bash": "4.4-19.6.1", "filesystem": "15.0-11.3.2"} {
		if p := have[name]; p.Version != version || p.DB != DBRPM {
			t.Errorf("%s: got %+v, want version %s", name, p, version)
		}
	}
	// The file holds 35 strings ending in .src.rpm: one SOURCERPM a package.
	if len(got) != 35 {
		t.Errorf("%d packages, want 35", len(got))
	}
}

// moduleFile finds a file of a dependency, at the version go.mod names, in
// the module cache.
func moduleFile(t *testing.T, mod, file string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Skipf("go list -m %s: %v (go mod download %s fetches it)", mod, err, mod)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), file)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return p
}

// TestInspectRPMImage scans an AlmaLinux-like image whose rpm database
// came from rpm: every package is inventoried, the advisory for
// rung-hello below 2:1.2.4 matches through its source package, and the
// rpm listing the image also carries is ignored in favour of the
// database.
func TestInspectRPMImage(t *testing.T) {
	dbpath := rpmtest.Build(t)
	want := rpmTruth(t, dbpath, "sqlite", "AlmaLinux:9")
	db, err := os.ReadFile(filepath.Join(dbpath, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	ents := []ent{
		{name: "etc/os-release", body: "ID=almalinux\nVERSION_ID=9.4\n"},
		{name: "var/lib/rpm/rpmdb.sqlite", body: string(db)},
		{name: "var/lib/rung/rpm-manifest", body: testdata(t, "rpm-manifest")},
	}
	if wal, err := os.ReadFile(filepath.Join(dbpath, "rpmdb.sqlite-wal")); err == nil && len(wal) > 0 {
		ents = append(ents, ent{name: "var/lib/rpm/rpmdb.sqlite-wal", body: string(wal)})
	}
	img, _ := mutate.AppendLayers(empty.Image, layer(t, ents...))
	res, err := Inspect(t.Context(), img, Options{Advisories: fixtureDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, res.Facts.Packages); diff != "" {
		t.Errorf("packages (-rpm -qa +rung):\n%s", diff)
	}
	if len(res.Facts.Gaps)+len(res.Facts.Unreadable) != 0 {
		t.Errorf("gaps %q, unreadable %q", res.Facts.Gaps, res.Facts.Unreadable)
	}
	var ids []string
	for _, v := range res.Facts.Vulnerabilities {
		ids = append(ids, v.ID+" "+v.Package)
	}
	if diff := cmp.Diff([]string{"ALSA-2025:9006 libhello", "ALSA-2025:9006 rung-hello"}, ids); diff != "" {
		t.Errorf("vulnerabilities (-want +got):\n%s", diff)
	}
}

// TestReadRPMDatabaseHostile feeds broken and crafted databases: each is
// ErrUnreadableDB, named as such, and none takes the caller down or hangs
// it. The cyclic one loops go-rpmdb's Berkeley DB reader over one
// overflow page forever; only the child's limits end it.
func TestReadRPMDatabaseHostile(t *testing.T) {
	dbpath := rpmtest.Build(t)
	bdb := rpmtest.BerkeleyDB(t, dbpath)
	good, err := os.ReadFile(filepath.Join(bdb, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	cyclic := cycleOverflow(t, good)
	sqlite, err := os.ReadFile(filepath.Join(dbpath, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		name string
		data []byte
	}{
		"empty":              {name: "Packages", data: nil},
		"text":               {name: "Packages", data: []byte("not a database at all")},
		"sqlite magic only":  {name: "rpmdb.sqlite", data: []byte("SQLite format 3\x00")},
		"sqlite truncated":   {name: "rpmdb.sqlite", data: sqlite[:len(sqlite)/3]},
		"sqlite no packages": {name: "rpmdb.sqlite", data: emptySQLite(t)},
		"ndb magic only":     {name: "Packages.db", data: []byte("RpmP\x00\x00\x00\x00\x00\x00\x00\x00")},
		"bdb truncated":      {name: "Packages", data: good[:len(good)/2]},
		"bdb zeroed pages":   {name: "Packages", data: zeroAfter(good, 4096)},
		"bdb overflow cycle": {name: "Packages", data: cyclic},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := readRPM(t.Context(), c.name, bytes.NewReader(c.data), nil, "Red Hat")
			if !errors.Is(err, ErrUnreadableDB) {
				t.Fatalf("got %d packages, err %v; want ErrUnreadableDB", len(got), err)
			}
			t.Logf("%v", err)
		})
	}
}

// cycleOverflow points the first overflow page of a Berkeley DB file at
// itself. Page header (db_page.h): lsn 8 bytes, pgno 4, prev_pgno 4,
// next_pgno 4, entries 2, hf_offset 2, level 1, type 1; P_OVERFLOW is 7.
func cycleOverflow(t *testing.T, db []byte) []byte {
	t.Helper()
	const pageSize, pOverflow = 4096, 7
	out := bytes.Clone(db)
	for off := pageSize; off+pageSize <= len(out); off += pageSize {
		page := out[off : off+pageSize]
		if page[25] == pOverflow && binary.LittleEndian.Uint32(page[16:20]) != 0 {
			copy(page[16:20], page[8:12]) // next_pgno = pgno
			return out
		}
	}
	t.Fatal("no chained overflow page in the fixture: rung-big's header should span several pages")
	return nil
}

func zeroAfter(b []byte, n int) []byte {
	out := bytes.Clone(b)
	clear(out[n:])
	return out
}

// emptySQLite is a valid SQLite file with no Packages table.
func emptySQLite(t *testing.T) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.sqlite")
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE other (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadRPMDatabaseCancelled: a caller that gives up gets its own
// context's error, not a verdict on the database.
func TestReadRPMDatabaseCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := readRPM(ctx, "Packages", strings.NewReader("whatever"), nil, "Red Hat")
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreadableDB) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// BenchmarkRPMDatabase is the price of parsing an rpm database in a
// limited child process (rung's way) side by side with parsing it in
// process (go-rpmdb called directly, what a scanner that trusts its input
// does), on SUSE's real NDB database of 35 packages.
//
//	go test ./internal/scan -run '^$' -bench RPMDatabase
func BenchmarkRPMDatabase(b *testing.B) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/knqyf263/go-rpmdb").Output()
	if err != nil {
		b.Skipf("go list: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "pkg/testdata/sle15-bci/Packages.db")
	b.Run("child", func(b *testing.B) {
		for b.Loop() {
			if pkgs, err := ReadRPMDatabase(b.Context(), path, ""); err != nil || len(pkgs) != 35 {
				b.Fatalf("%d packages, %v", len(pkgs), err)
			}
		}
	})
	b.Run("in-process", func(b *testing.B) {
		for b.Loop() {
			if entries, err := listRPM(path); err != nil || len(entries) != 35 {
				b.Fatalf("%d packages, %v", len(entries), err)
			}
		}
	})
}

// TestRPMChildConfinement reads the parser child's live process while it
// chews on the cyclic database: it runs as nobody with no groups, with
// no_new_privs and a seccomp filter, in a network namespace of its own,
// under the memory limit.
func TestRPMChildConfinement(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the child drops to nobody only when rung runs as root")
	}
	bdb := rpmtest.BerkeleyDB(t, rpmtest.Build(t))
	good, err := os.ReadFile(filepath.Join(bdb, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := readRPM(t.Context(), "Packages", bytes.NewReader(cycleOverflow(t, good)), nil, "Red Hat")
		done <- err
	}()
	var status, limits string
	var netns string
	for status == "" {
		select {
		case err := <-done:
			t.Fatalf("the child ended (%v) before it was seen", err)
		default:
		}
		pids, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range pids {
			cmd, err := os.ReadFile(p)
			if err != nil || !bytes.HasPrefix(cmd, []byte("rung-rpmdb\x00")) {
				continue
			}
			dir := filepath.Dir(p)
			s, err1 := os.ReadFile(filepath.Join(dir, "status"))
			l, err2 := os.ReadFile(filepath.Join(dir, "limits"))
			n, err3 := os.Readlink(filepath.Join(dir, "ns", "net"))
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			// Seen between exec and its own set-up: look again.
			if !strings.Contains(string(s), "Seccomp:\t2") {
				continue
			}
			status, limits, netns = string(s), string(l), n
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-done; !errors.Is(err, ErrUnreadableDB) {
		t.Errorf("cyclic database: %v, want ErrUnreadableDB", err)
	}
	field := func(name string) string {
		for _, line := range strings.Split(status, "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.Join(strings.Fields(v), " ")
			}
		}
		return ""
	}
	ours, _ := os.Readlink("/proc/self/ns/net")
	for name, want := range map[string]string{
		"Uid": "65534 65534 65534 65534", "Gid": "65534 65534 65534 65534", "Groups": "",
		"NoNewPrivs": "1", "CapEff": "0000000000000000", "Seccomp": "2", "Seccomp_filters": "1",
	} {
		if got := field(name); got != want {
			t.Errorf("child %s = %q, want %q", name, got, want)
		}
	}
	if netns == ours {
		t.Errorf("child shares this process's network namespace %s", ours)
	}
	if !regexp.MustCompile(`Max address space\s+4294967296\s+4294967296`).MatchString(limits) {
		t.Errorf("child limits lack the 4 GiB address space:\n%s", limits)
	}
}
