package policy

import (
	"os"
	"strings"
	"testing"
)

// TestAdmissionDocsCurrent: docs/admission.md lists every built-in check
// with its severity and blocking, and nothing that is not a check.
func TestAdmissionDocsCurrent(t *testing.T) {
	b, err := os.ReadFile("../../docs/admission.md")
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ severity, blocks string }
	documented := map[string][]row{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(line, "| ") {
			continue
		}
		id := strings.TrimSpace(cells[1])
		if id == "check" || id == "blocking" || strings.HasPrefix(id, "`") || strings.HasPrefix(id, "---") {
			continue
		}
		documented[id] = append(documented[id], row{strings.TrimSpace(cells[2]), strings.TrimSpace(cells[3])})
	}
	e := newEngine(t, Config{})
	seen := map[string]bool{}
	for _, c := range e.Checks() {
		seen[c.ID] = true
		want := row{c.Severity.String(), string(c.Blocks)}
		if c.ID == "CIS-4.4" {
			want.severity = "per advisory" // each finding carries its advisory's severity
		}
		rows := documented[c.ID]
		found := false
		for _, r := range rows {
			found = found || r == want
		}
		if !found {
			t.Errorf("docs/admission.md: %s is documented as %v, want a row with severity %q and blocks %q", c.ID, rows, want.severity, want.blocks)
		}
	}
	for id := range documented {
		if !seen[id] {
			t.Errorf("docs/admission.md documents %s, which is not a check", id)
		}
	}
}
