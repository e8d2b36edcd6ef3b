package scan

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/vulndb"
)

// Source looks up the advisories of one package (vulndb.DB implements it).
type Source interface {
	Advisories(ctx context.Context, ecosystem, name string) ([]vulndb.Advisory, error)
}

// Match returns the vulnerabilities of pkgs in src, sorted by package and
// ID. A package is looked up by its source package name (what Debian,
// Alpine and Red Hat advisories are written against) and, when that
// differs, its binary name; versions are compared with the ecosystem's
// rules (Versions). Packages of an ecosystem without version rules are
// not matched. Each (package, advisory) pair is reported once.
func Match(ctx context.Context, src Source, pkgs []policy.Package) ([]policy.Vulnerability, error) {
	var out []policy.Vulnerability
	type seenKey struct{ pkg, id string }
	seen := map[seenKey]bool{}
	// Binary packages of one source (gcc-12 has a dozen) share advisories:
	// look each name up once.
	cache := map[[2]string][]vulndb.Advisory{}
	lookup := func(eco, name string) ([]vulndb.Advisory, error) {
		k := [2]string{eco, name}
		if advs, ok := cache[k]; ok {
			return advs, nil
		}
		advs, err := src.Advisories(ctx, eco, name)
		if err == nil {
			cache[k] = advs
		}
		return advs, err
	}
	comparers := map[string]Comparer{}
	for _, p := range pkgs {
		compare, ok := comparers[p.Ecosystem]
		if !ok {
			if compare, ok = cachingVersions(p.Ecosystem); !ok {
				continue
			}
			comparers[p.Ecosystem] = compare
		}
		names := []string{cmp.Or(p.Source, p.Name)}
		if p.Name != names[0] {
			names = append(names, p.Name)
		}
		for i, name := range names {
			ver := cmp.Or(p.SourceVersion, p.Version)
			if i > 0 {
				ver = p.Version
			}
			advs, err := lookup(p.Ecosystem, name)
			if err != nil {
				return nil, fmt.Errorf("match %s: %w", p.Name, err)
			}
			for _, a := range advs {
				if seen[seenKey{p.Name, a.ID}] {
					continue
				}
				hit, fixed := Affects(compare, a, ver)
				if !hit {
					continue
				}
				seen[seenKey{p.Name, a.ID}] = true
				sev, _ := policy.ParseSeverity(a.Severity)
				out = append(out, policy.Vulnerability{
					ID: a.ID, Aliases: a.Aliases, Package: p.Name, Version: p.Version,
					FixedIn: fixed, Severity: sev, Summary: a.Summary,
				})
			}
		}
	}
	slices.SortFunc(out, func(a, b policy.Vulnerability) int {
		return strings.Compare(a.Package+"\x00"+a.ID, b.Package+"\x00"+b.ID)
	})
	return out, nil
}

// Affects reports whether version v lies in one of a's ranges (the OSV
// evaluation: events sorted by version, "introduced" opens a range,
// "fixed" and "limit" close it before, "last_affected" after) or is one
// of its listed versions, and the fixed version of the range it lies in.
// A version or event the comparer cannot parse never matches, except by
// exact listing.
func Affects(cmp Comparer, a vulndb.Advisory, v string) (affected bool, fixed string) {
	if slices.Contains(a.Versions, v) {
		return true, ""
	}
	if _, err := cmp(v, v); err != nil {
		return false, ""
	}
	for _, r := range a.Ranges {
		if hit, fix := inRange(cmp, r.Events, v); hit {
			return true, fix
		}
	}
	return false, ""
}

func inRange(cmp Comparer, events []vulndb.Event, v string) (bool, string) {
	type point struct {
		ver  string
		kind byte // 'i' introduced, 'f' fixed, 'l' last_affected, 'x' limit
	}
	pts := make([]point, 0, len(events))
	for _, e := range events {
		switch {
		case e.Introduced != "":
			pts = append(pts, point{e.Introduced, 'i'})
		case e.Fixed != "":
			pts = append(pts, point{e.Fixed, 'f'})
		case e.LastAffected != "":
			pts = append(pts, point{e.LastAffected, 'l'})
		case e.Limit != "":
			pts = append(pts, point{e.Limit, 'x'})
		}
	}
	// compare orders "0" (introduced: the beginning of time) before all.
	compare := func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "0":
			return -1
		case b == "0":
			return 1
		}
		c, err := cmp(a, b)
		if err != nil {
			return strings.Compare(a, b)
		}
		return c
	}
	if len(pts) > 1 {
		slices.SortStableFunc(pts, func(a, b point) int { return compare(a.ver, b.ver) })
	}
	affected := false
	fixed := ""
	for _, p := range pts {
		c := 1 // v compared with p.ver
		if p.ver != "0" {
			var err error
			if c, err = cmp(v, p.ver); err != nil {
				return false, ""
			}
		}
		switch p.kind {
		case 'i':
			if c >= 0 {
				affected, fixed = true, ""
			}
		case 'f', 'x':
			if c >= 0 {
				affected = false
			} else if affected && fixed == "" && p.kind == 'f' {
				fixed = p.ver
			}
		case 'l':
			if c > 0 {
				affected = false
			}
		}
	}
	return affected, fixed
}
