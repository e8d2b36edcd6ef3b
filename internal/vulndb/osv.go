package vulndb

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Entry is one OSV record (https://ossf.github.io/osv-schema/, schema
// 1.6), with the fields rung reads.
type Entry struct {
	SchemaVersion string          `json:"schema_version,omitempty"`
	ID            string          `json:"id"`
	Modified      time.Time       `json:"modified"`
	Withdrawn     *time.Time      `json:"withdrawn,omitempty"`
	Aliases       []string        `json:"aliases,omitempty"`
	Upstream      []string        `json:"upstream,omitempty"`
	Summary       string          `json:"summary,omitempty"`
	Details       string          `json:"details,omitempty"`
	Severity      []Severity      `json:"severity,omitempty"`
	Affected      []Affected      `json:"affected,omitempty"`
	DatabaseSpec  json.RawMessage `json:"database_specific,omitempty"`
}

// Severity is an OSV severity score: a CVSS vector, or an ecosystem's own
// rating (type "Ubuntu": "medium").
type Severity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

// Affected is one affected package of an Entry.
type Affected struct {
	Package           Package         `json:"package"`
	Severity          []Severity      `json:"severity,omitempty"`
	Ranges            []Range         `json:"ranges,omitempty"`
	Versions          []string        `json:"versions,omitempty"`
	EcosystemSpecific json.RawMessage `json:"ecosystem_specific,omitempty"`
	DatabaseSpecific  json.RawMessage `json:"database_specific,omitempty"`
}

// Package names a package in an ecosystem ("Debian:12", "openssl").
type Package struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
	PURL      string `json:"purl,omitempty"`
}

// Range is a version range: events in version order.
type Range struct {
	// Type is ECOSYSTEM, SEMVER or GIT; rung matches ECOSYSTEM ranges (OS
	// packages are never SEMVER or GIT).
	Type   string  `json:"type"`
	Events []Event `json:"events"`
}

// Event is one point of a Range; exactly one field is set. Introduced
// "0" means every version before the next event.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// Advisory is what the database stores for one vulnerability of one
// package: enough to match a version and report it.
type Advisory struct {
	ID       string   `json:"id"`
	Aliases  []string `json:"aliases,omitempty"`
	Summary  string   `json:"summary,omitempty"`
	Severity string   `json:"severity,omitempty"` // critical, high, medium, low, or ""
	Ranges   []Range  `json:"ranges,omitempty"`
	Versions []string `json:"versions,omitempty"`
}

// ParseEntry decodes one OSV JSON document and checks the fields rung
// relies on.
func ParseEntry(data []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if e.ID == "" {
		return nil, fmt.Errorf("%w: no id", ErrInvalidEntry)
	}
	for i, a := range e.Affected {
		for j, r := range a.Ranges {
			for k, ev := range r.Events {
				n := 0
				for _, s := range []string{ev.Introduced, ev.Fixed, ev.LastAffected, ev.Limit} {
					if s != "" {
						n++
					}
				}
				if n != 1 {
					return nil, fmt.Errorf("%w: %s: affected[%d].ranges[%d].events[%d]: want exactly one of introduced, fixed, last_affected, limit", ErrInvalidEntry, e.ID, i, j, k)
				}
			}
		}
	}
	return &e, nil
}

// advisories splits e into one Advisory per affected package, keyed by
// ecosystem and name. Only ECOSYSTEM ranges are kept.
func (e *Entry) advisories() map[key]Advisory {
	out := map[key]Advisory{}
	top := severityOf(e.Severity, e.DatabaseSpec)
	for _, a := range e.Affected {
		if a.Package.Ecosystem == "" || a.Package.Name == "" {
			continue
		}
		k := key{ecosystem: a.Package.Ecosystem, name: a.Package.Name}
		adv, ok := out[k]
		if !ok {
			adv = Advisory{ID: e.ID, Aliases: e.Aliases, Summary: summary(e), Severity: top}
		}
		if s := severityOf(a.Severity, a.EcosystemSpecific, a.DatabaseSpecific); rank(s) > rank(adv.Severity) {
			adv.Severity = s
		}
		for _, r := range a.Ranges {
			if r.Type == "ECOSYSTEM" {
				adv.Ranges = append(adv.Ranges, r)
			}
		}
		adv.Versions = append(adv.Versions, a.Versions...)
		out[k] = adv
	}
	for k, a := range out {
		if len(a.Ranges) == 0 && len(a.Versions) == 0 {
			delete(out, k) // SEMVER or GIT only: nothing an OS package can match
		}
	}
	return out
}

func summary(e *Entry) string {
	s := e.Summary
	if s == "" {
		s, _, _ = strings.Cut(strings.TrimSpace(e.Details), "\n")
	}
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}

// severityOf returns the highest severity named by scores (CVSS v2, v3 and
// v4 vectors, scored by CVSSScore and rated by each version's own scale) or
// by a "severity" field of the database- or ecosystem-specific objects
// (GitHub, Alpine, Ubuntu use it). A vector that does not parse names no
// severity; it does not fail the record.
//
// When a record carries several ratings (NVD's v3.1 and a CNA's v4.0
// vector, v2 next to v3 on old CVEs, a distribution's own word), the
// highest wins rather than, say, the newest CVSS version: OSV does not say
// which source is authoritative, and the rating feeds a tenant's admission
// threshold, so a lower rating from one source must not hide a higher one
// from another.
func severityOf(scores []Severity, specific ...json.RawMessage) string {
	best := ""
	for _, s := range scores {
		var got string
		switch s.Type {
		case typeCVSSv2, typeCVSSv3, typeCVSSv4:
			if score, err := CVSSScore(s.Type, s.Score); err == nil {
				got = cvssRating(s.Type, score)
			}
		case "Ubuntu":
			got = normalizeRating(s.Score)
		}
		if rank(got) > rank(best) {
			best = got
		}
	}
	for _, raw := range specific {
		var v struct {
			Severity json.RawMessage `json:"severity"`
		}
		if len(raw) == 0 || json.Unmarshal(raw, &v) != nil || len(v.Severity) == 0 {
			continue
		}
		var word string
		if json.Unmarshal(v.Severity, &word) == nil {
			if got := normalizeRating(word); rank(got) > rank(best) {
				best = got
			}
		}
	}
	return best
}

// normalizeRating maps ecosystem words to critical, high, medium, low.
func normalizeRating(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "critical":
		return "critical"
	case "high", "important":
		return "high"
	case "medium", "moderate":
		return "medium"
	case "low", "negligible", "unimportant":
		return "low"
	}
	return ""
}

func rank(s string) int { return slices.Index([]string{"low", "medium", "high", "critical"}, s) }
