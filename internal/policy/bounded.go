package policy

import (
	"fmt"
	"strings"
	"unicode"
)

// Bounds of a Decision as it travels from a node to the audit log.
const (
	boundFindings = 40
	boundNotes    = 10
	boundChecks   = 100
	boundRefs     = 4
	boundShort    = 128 // IDs, titles, subjects, digests, paths, check names
	boundLong     = 256 // details and fixes
)

// Bounded returns d cut to a size an audit entry can hold, with printable
// strings only: at most 40 findings and 10 notes (a note says how many
// more there were), 100 checked and skipped checks, and strings of at most
// 128 or 256 bytes with control characters replaced. A node's decision
// about an image with thousands of vulnerabilities is still one entry,
// and no string can fake a line of `rung get events`.
func (d Decision) Bounded() Decision {
	out := d
	out.Kind, out.Tenant = Clean(d.Kind, boundShort), Clean(d.Tenant, boundShort)
	out.Subject, out.Digest = Clean(d.Subject, boundShort), Clean(d.Digest, boundShort)
	out.Findings = boundFindingList(d.Findings, boundFindings)
	out.Notes = boundFindingList(d.Notes, boundNotes)
	if more := len(d.Findings) - len(out.Findings); more > 0 {
		out.Notes = append(out.Notes, Finding{ID: "RUNG-audit-trimmed", Title: "Findings not kept in the audit entry", Severity: SeverityUnknown,
			Detail: fmt.Sprintf("%d more finding(s); the decision rejected on all of them", more), Fix: "see rung check image for the full report"})
	}
	if more := len(d.Notes) - boundNotes; more > 0 {
		out.Notes = append(out.Notes, Finding{ID: "RUNG-audit-trimmed", Title: "Notes not kept in the audit entry", Severity: SeverityUnknown,
			Detail: fmt.Sprintf("%d more note(s)", more), Fix: "see rung check image for the full report"})
	}
	out.Checked = boundStrings(d.Checked, boundChecks, boundShort)
	out.Skipped = boundStrings(d.Skipped, boundChecks, boundLong)
	return out
}

func boundFindingList(fs []Finding, n int) []Finding {
	if fs == nil {
		return nil
	}
	out := make([]Finding, 0, min(len(fs), n))
	for _, f := range fs[:min(len(fs), n)] {
		out = append(out, Finding{
			ID: Clean(f.ID, boundShort), Title: Clean(f.Title, boundShort), Severity: f.Severity,
			Detail: Clean(f.Detail, boundLong), Fix: Clean(f.Fix, boundLong), Path: Clean(f.Path, boundShort),
			Advisory: Clean(f.Advisory, boundShort), Refs: boundStrings(f.Refs, boundRefs, boundShort),
		})
	}
	return out
}

func boundStrings(ss []string, n, size int) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, 0, min(len(ss), n))
	for _, s := range ss[:min(len(ss), n)] {
		out = append(out, Clean(s, size))
	}
	return out
}

// Clean replaces control characters and cuts s to at most n bytes on a
// rune boundary: text from a node or an image, made safe to show and store.
func Clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
