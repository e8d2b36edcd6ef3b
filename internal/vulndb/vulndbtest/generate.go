// Package vulndbtest generates synthetic OSV databases for tests and
// benchmarks (rung bench admission): realistic in shape, deterministic for
// a seed.
package vulndbtest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"rung.dev/rung/internal/vulndb"
)

// Generate returns n OSV records in ecosystem. A fraction hit of them
// affect one of names (the packages of a real image); the rest affect
// synthetic packages that no image has, as most of a real database does.
// Affected records have an ECOSYSTEM range from "0" to a fixed Debian-style
// version that is randomly below or above typical installed versions.
func Generate(n int, ecosystem string, names []string, hit float64, seed uint64) []*vulndb.Entry {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	modified := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	severities := []string{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
		"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N",
	}
	out := make([]*vulndb.Entry, n)
	for i := range out {
		pkg := fmt.Sprintf("synthetic-%d", r.IntN(n))
		if len(names) > 0 && r.Float64() < hit {
			pkg = names[r.IntN(len(names))]
		}
		fixed := fmt.Sprintf("%d.%d.%d-%d", r.IntN(12), r.IntN(20), r.IntN(30), 1+r.IntN(5))
		if r.IntN(4) == 0 {
			fixed = fmt.Sprintf("%d:%s", 1+r.IntN(2), fixed)
		}
		e := &vulndb.Entry{
			ID:       fmt.Sprintf("DEBIAN-CVE-%d-%05d", 2000+i%26, i),
			Modified: modified,
			Aliases:  []string{fmt.Sprintf("CVE-%d-%05d", 2000+i%26, i)},
			Summary:  fmt.Sprintf("%s: synthetic vulnerability %d", pkg, i),
			Affected: []vulndb.Affected{{
				Package: vulndb.Package{Ecosystem: ecosystem, Name: pkg},
				Ranges:  []vulndb.Range{{Type: "ECOSYSTEM", Events: []vulndb.Event{{Introduced: "0"}, {Fixed: fixed}}}},
			}},
		}
		if r.IntN(3) > 0 {
			e.Severity = []vulndb.Severity{{Type: "CVSS_V3", Score: severities[r.IntN(len(severities))]}}
		}
		out[i] = e
	}
	return out
}
