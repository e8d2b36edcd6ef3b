package policy

import (
	"fmt"
	"slices"
	"time"

	"rung.dev/rung/internal/bundle"
)

// DefaultMaxImageAge is how old an image may be (by its config's created
// time) before RUNG-image-age rejects it, unless Config says otherwise.
const DefaultMaxImageAge = 365 * 24 * time.Hour

// DefaultBlockSeverity is the vulnerability severity at and above which an
// image is rejected when the tenant sets none.
const DefaultBlockSeverity = SeverityHigh

// Config is the operator's admission configuration. It can add rules and
// tighten limits; nothing in it turns a built-in check off.
type Config struct {
	// Rules are operator CEL rules, evaluated after the built-in checks.
	Rules []Rule `json:"rules,omitempty"`
	// MaxImageAge is the oldest image admitted; zero means
	// DefaultMaxImageAge. It can be lowered or raised, not disabled.
	MaxImageAge time.Duration `json:"maxImageAge,omitempty"`
}

// Engine evaluates admission. It is immutable after New and safe for
// concurrent use.
type Engine struct {
	workloadChecks []workloadCheck
	imageChecks    []imageCheck
	rules          []compiledRule
	allowedCaps    []string
	maxAge         time.Duration
}

// New compiles cfg's rules and returns an Engine with every built-in check.
// Every faulty rule is reported, each wrapping ErrInvalidRule.
func New(cfg Config) (*Engine, error) {
	e := &Engine{
		workloadChecks: builtinWorkloadChecks(),
		imageChecks:    builtinImageChecks(),
		allowedCaps:    allowedCapabilities(),
		maxAge:         cfg.MaxImageAge,
	}
	if e.maxAge <= 0 {
		e.maxAge = DefaultMaxImageAge
	}
	for i := range e.workloadChecks {
		if e.workloadChecks[i].Blocks == "" {
			e.workloadChecks[i].Blocks = BlockAlways // the platform's own guarantees
		}
	}
	builtin := make([]string, 0, len(e.workloadChecks)+len(e.imageChecks))
	for _, c := range e.Checks() {
		builtin = append(builtin, c.ID)
		builtin = append(builtin, c.Refs...)
	}
	rules, err := compileRules(cfg.Rules, builtin)
	if err != nil {
		return nil, err
	}
	e.rules = rules
	return e, nil
}

// Checks lists every check the engine runs: built-in workload checks, then
// built-in image checks, then operator rules.
func (e *Engine) Checks() []Check {
	var out []Check
	for _, c := range e.workloadChecks {
		out = append(out, c.Check)
	}
	for _, c := range e.imageChecks {
		out = append(out, c.Check)
	}
	out = append(out, vulnerabilityCheck())
	for _, r := range e.rules {
		out = append(out, r.check)
	}
	return out
}

// Check returns the check with id (or with id among its Refs).
func (e *Engine) Check(id string) (Check, bool) {
	for _, c := range e.Checks() {
		if c.ID == id || slices.Contains(c.Refs, id) {
			return c, true
		}
	}
	return Check{}, false
}

// allowedCapabilities is the platform's capability allow-list. It comes
// from internal/bundle, the package that builds the specs, so that the two
// can never disagree, and it is not configurable: an operator cannot widen
// it through admission.
func allowedCapabilities() []string { return bundle.AllowedCapabilities() }

// String renders a check for listings: "ID [severity] title".
func (c Check) String() string { return fmt.Sprintf("%s [%s] %s", c.ID, c.Severity, c.Title) }
