package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestDecisionBounded(t *testing.T) {
	big := Decision{Kind: KindImage, Tenant: "acme", Subject: "app:1\nFAKE ROW", Digest: "sha256:" + strings.Repeat("a", 64)}
	for range 300 {
		big.Notes = append(big.Notes, Finding{ID: "CIS-4.4", Title: "vuln", Detail: strings.Repeat("é", 400), Fix: "upgrade"})
	}
	for range 45 {
		big.Findings = append(big.Findings, Finding{ID: "CIS-4.8", Title: "setuid", Detail: "/bin/x", Refs: []string{"a", "b", "c", "d", "e"}})
	}
	got := big.Bounded()
	if got.Subject != "app:1 FAKE ROW" {
		t.Errorf("subject %q: control characters must go", got.Subject)
	}
	if len(got.Findings) != 40 || len(got.Notes) != 12 || len(got.Findings[0].Refs) != 4 {
		t.Errorf("findings %d, notes %d, refs %d; want 40, 10 + 2 trim notes, 4", len(got.Findings), len(got.Notes), len(got.Findings[0].Refs))
	}
	if d := got.Notes[0].Detail; len(d) > 256 || !utf8.ValidString(d) || !strings.HasSuffix(d, "…") {
		t.Errorf("note detail %d bytes, valid %v: %q", len(d), utf8.ValidString(d), d[len(d)-8:])
	}
	var trims []string
	for _, n := range got.Notes[10:] {
		trims = append(trims, n.Detail)
	}
	if diff := cmp.Diff([]string{"5 more finding(s); the decision rejected on all of them", "290 more note(s)"}, trims); diff != "" {
		t.Errorf("trim notes (-want +got):\n%s", diff)
	}
	// It fits an audit entry (64 KiB) with room to spare.
	if b, _ := json.Marshal(got); len(b) > 48<<10 {
		t.Errorf("bounded decision is %d bytes of JSON", len(b))
	}
	// A small decision is unchanged.
	small := Decision{Kind: KindWorkload, Tenant: "acme", Subject: "acme-web-0", Findings: []Finding{{ID: "PSS-x", Detail: "d"}}, Checked: []string{"PSS-x"}}
	if diff := cmp.Diff(small, small.Bounded()); diff != "" {
		t.Errorf("small decision changed (-want +got):\n%s", diff)
	}
}
