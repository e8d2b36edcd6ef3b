package scan

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/vulndb"
)

// benchEntries is the size of the generated database of the admission
// benchmark (rung bench admission): 100,000 OSV records.
const benchEntries = 100_000

// BenchmarkAdmissionScan matches a real Debian 12 package list (744
// packages) against a generated 100,000-record OSV database, indexed
// (vulndb on bbolt, one prefix seek per package) and linear (the
// baseline), in one run. Both must find the same vulnerabilities.
//
//	go test ./internal/scan -run '^$' -bench AdmissionScan -benchmem
func BenchmarkAdmissionScan(b *testing.B) {
	ctx := context.Background()
	pkgs := fullDebian(b)
	entries := AdmissionEntries(benchEntries, pkgs)
	path := filepath.Join(b.TempDir(), "vulndb.db")
	db, err := vulndb.Open(ctx, path, vulndb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	if _, err := db.Put(ctx, entries, time.Now()); err != nil {
		b.Fatal(err)
	}
	importTime := time.Since(start)
	fi, _ := os.Stat(path)

	got, err := Match(ctx, db, pkgs)
	if err != nil {
		b.Fatal(err)
	}
	if diff := cmp.Diff(VulnKeys(Linear(entries).Match(pkgs)), VulnKeys(got)); diff != "" {
		b.Fatalf("indexed and linear disagree (-linear +indexed):\n%s", diff)
	}
	b.Logf("%d packages, %d records, %d vulnerabilities; import %v, database %d MiB",
		len(pkgs), len(entries), len(got), importTime.Round(time.Millisecond), fi.Size()>>20)

	b.Run("indexed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Match(ctx, db, pkgs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(pkgs))*float64(b.N)/b.Elapsed().Seconds(), "pkgs/s")
	})
	b.Run("linear", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Linear(entries).Match(pkgs)
		}
		b.ReportMetric(float64(len(pkgs))*float64(b.N)/b.Elapsed().Seconds(), "pkgs/s")
	})
}

// BenchmarkAdmissionImage is the whole image admission of a small
// Debian-like image: read the layers, inventory, match, judge. Its ops/s
// is images checked per second.
func BenchmarkAdmissionImage(b *testing.B) {
	img := debianImage(b)
	db := fixtureDB(b)
	eng, err := policy.New(policy.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := Inspect(b.Context(), img, Options{Advisories: db})
		if err != nil {
			b.Fatal(err)
		}
		d := eng.Image(policy.ImageInput{Ref: "bench", Facts: res.Facts, Now: time.Now()})
		if d.Allowed || !strings.Contains(d.Err().Error(), "CIS-4.1") {
			b.Fatal("unexpected decision")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
}
