// Package policy decides admission (DESIGN §6): it turns what is known
// about a workload or an image into findings, each naming a check with an
// ID, a title, a severity and a fix, and into a Decision that the control
// plane enforces and appends to its audit log.
//
// The package is pure: it reads no files, images or registries. Facts come
// from the I/O packages (internal/scan for image contents, internal/sign for
// signatures, internal/bundle for the runtime spec); policy only judges
// them. Built-in checks always run; operators may add CEL rules (Rule) but
// cannot remove or weaken a built-in check.
package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Errors callers can check with errors.Is.
var (
	// ErrRejected is wrapped by Decision.Err when a decision denies.
	ErrRejected = errors.New("admission rejected")
	// ErrInvalidRule is wrapped by every error about an operator rule.
	ErrInvalidRule = errors.New("invalid admission rule")
	// ErrInvalidSeverity is returned by ParseSeverity.
	ErrInvalidSeverity = errors.New("invalid severity")
)

// Severity ranks a finding. The zero value is SeverityUnknown, used for
// vulnerabilities whose advisory gives no severity.
type Severity int

// Severities, least severe first.
const (
	SeverityUnknown Severity = iota
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

func severityNames() []string { return []string{"unknown", "low", "medium", "high", "critical"} }

// String returns the lower-case name of s.
func (s Severity) String() string {
	if s < SeverityUnknown || s > SeverityCritical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames()[s]
}

// ParseSeverity parses a severity name, case-insensitively ("HIGH", "high").
func ParseSeverity(s string) (Severity, error) {
	i := slices.Index(severityNames(), strings.ToLower(strings.TrimSpace(s)))
	if i < 0 {
		return 0, fmt.Errorf("%w %q: use one of %s", ErrInvalidSeverity, s, strings.Join(severityNames(), ", "))
	}
	return Severity(i), nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Blocking says when a check's findings reject (docs/admission.md lists
// every check with its severity and blocking).
type Blocking string

// Blockings.
const (
	// BlockAlways: every finding rejects, whatever the tenant's threshold.
	// For what the tenant or the operator asked for explicitly (registries,
	// signatures, image age, operator rules, intact package databases) and
	// for the platform's own runtime guarantees (namespaces, seccomp, limits):
	// no threshold weakens them. The zero value means the same (fail closed).
	BlockAlways Blocking = "always"
	// BlockAtSeverity: a finding rejects when its severity is at or above
	// the tenant's spec.images.blockSeverity (DefaultBlockSeverity when
	// unset); below it, it is a note. For the image's own configuration and
	// contents (user, ports, healthcheck, world-writable files, secrets) and
	// its known vulnerabilities.
	BlockAtSeverity Blocking = "severity"
	// BlockNever: the platform itself removes what the check finds when it
	// unpacks the image (setuid bits are stripped, device nodes and fifos
	// are not created), so findings are always notes.
	BlockNever Blocking = "never"
)

// rejects reports whether a finding of severity sev of a check with
// blocking b rejects under the threshold block.
func (b Blocking) rejects(sev, block Severity) bool {
	switch b {
	case BlockNever:
		return false
	case BlockAtSeverity:
		return sev >= block
	}
	return true
}

// Check describes one admission check.
type Check struct {
	// ID is stable and unique: CIS-4.1 (CIS Docker Benchmark v1.6.0),
	// PSS-baseline-… / PSS-restricted-… (Kubernetes Pod Security
	// Standards), RUNG-… (rung's own), or an operator rule's ID.
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Severity Severity `json:"severity"`
	// Fix says what to change so that the check passes.
	Fix string `json:"fix"`
	// Refs name the same control in other standards (a PSS control that a
	// CIS check also covers), so that each control is reported once.
	Refs []string `json:"refs,omitempty"`
	// Blocks says when a finding of this check rejects.
	Blocks Blocking `json:"blocks"`
}

// Finding is one failed check, with what exactly failed.
type Finding struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Severity Severity `json:"severity"`
	// Detail names the offending value: "capability CAP_SYS_ADMIN".
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
	// Path is the file inside the image, for file findings.
	Path string `json:"path,omitempty"`
	// Advisory is the vulnerability ID, for vulnerability findings.
	Advisory string   `json:"advisory,omitempty"`
	Refs     []string `json:"refs,omitempty"`
}

func (c Check) finding(detail, path string) Finding {
	return Finding{ID: c.ID, Title: c.Title, Severity: c.Severity, Detail: detail, Fix: c.Fix, Path: path, Refs: c.Refs}
}

// String is "ID: title: detail".
func (f Finding) String() string { return f.ID + ": " + f.Title + ": " + f.Detail }

// Subject kinds of a Decision.
const (
	KindWorkload = "workload"
	KindImage    = "image"
)

// Decision is the outcome of one admission, in the shape the audit log
// stores: what was judged, which checks ran, what failed and why.
type Decision struct {
	// Kind is KindWorkload or KindImage.
	Kind string `json:"kind"`
	// Tenant owns the subject.
	Tenant string `json:"tenant,omitempty"`
	// Subject is the workload name, or the image reference as given.
	Subject string `json:"subject"`
	// Digest is the image manifest digest that was judged and that runs.
	Digest string `json:"digest,omitempty"`
	// Allowed is true when there are no findings.
	Allowed bool `json:"allowed"`
	// BlockSeverity is the threshold the decision applied to checks that
	// block by severity (the tenant's spec.images.blockSeverity).
	BlockSeverity Severity `json:"blockSeverity"`
	// Findings reject the subject; all of them are listed.
	Findings []Finding `json:"findings"`
	// Notes are informational and do not reject: findings below the
	// tenant's blocking severity, what the platform repairs itself when it
	// unpacks the image (setuid bits, device nodes), parts of the image
	// that could not be inventoried.
	Notes []Finding `json:"notes,omitempty"`
	// Checked lists the IDs of every check that ran, built-in and operator.
	Checked []string `json:"checked"`
	// Skipped lists checks that could not run for lack of facts, with why.
	Skipped []string `json:"skipped,omitempty"`
	// Time is when the decision was made (the caller's clock).
	Time time.Time `json:"time"`
}

// Err returns nil when d allows, otherwise an error wrapping ErrRejected
// that names every finding.
func (d *Decision) Err() error {
	if d.Allowed {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d finding(s):", d.Kind, d.Subject, len(d.Findings))
	for _, f := range d.Findings {
		fmt.Fprintf(&b, "\n  %s (fix: %s)", f, f.Fix)
	}
	return fmt.Errorf("%w: %s", ErrRejected, b.String())
}

// judge adds f to the findings when a check with blocking b rejects it
// under d's threshold, and to the notes otherwise.
func (d *Decision) judge(f Finding, b Blocking) {
	if b.rejects(f.Severity, d.BlockSeverity) {
		d.Findings = append(d.Findings, f)
	} else {
		d.Notes = append(d.Notes, f)
	}
}

// finish sorts the findings (most severe first, then by ID and detail) and
// sets Allowed.
func (d *Decision) finish() {
	sortFindings(d.Findings)
	sortFindings(d.Notes)
	if d.Findings == nil {
		d.Findings = []Finding{}
	}
	d.Allowed = len(d.Findings) == 0
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(b.Severity, a.Severity),
			cmp.Compare(a.ID, b.ID),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Detail, b.Detail),
		)
	})
}
