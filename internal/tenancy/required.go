package tenancy

import (
	"fmt"

	v1 "rung.dev/rung/api/v1"
)

// Party is one side of an ordered pair: everything a rule may look at.
// The attacker is the replica whose wrapper is being chosen; the victim is
// the neighbour it must not reach.
type Party struct {
	Tenant         string
	Organization   string
	Trust          string // "trusted" | "untrusted"
	TenantLabels   map[string]string
	Workload       string
	WorkloadLabels map[string]string
	DataClass      string // public | internal | confidential | restricted
	Privilege      string // standard | elevated
}

// Decision is a required tier and the rule that set it.
type Decision struct {
	Tier Tier
	// Rule names the deciding rule: "rule 3 (same tenant)" for the default
	// table (DefaultRule.Ref), or
	// "policy NAME" for an operator rule.
	Rule string
}

// Matcher is an operator rule compiled from a Policy (CEL in production).
type Matcher interface {
	// Name is the rule's name, for explanations.
	Name() string
	// Require is the tier the rule demands when it matches.
	Require() Tier
	// Match reports whether the rule applies to the ordered pair.
	Match(attacker, victim *Party) (bool, error)
}

// Rules is the full rule set: operator rules first, then the default table.
type Rules struct {
	Operator []Matcher
}

// Required returns required(a→b): the tier a's wrapper must have so that a,
// if malicious, cannot reach b. The first matching operator rule wins; if
// none matches, the default table of DESIGN §2 decides.
func (r *Rules) Required(a, b *Party) (Decision, error) {
	for _, m := range r.Operator {
		ok, err := m.Match(a, b)
		if err != nil {
			return Decision{}, fmt.Errorf("policy rule %s: %w", m.Name(), err)
		}
		if ok {
			return Decision{Tier: m.Require(), Rule: "policy " + m.Name()}, nil
		}
	}
	return Default(a, b), nil
}

// Default is the default rule table of DESIGN §2; the first matching row wins.
func Default(a, b *Party) Decision {
	sameTenant := a.Tenant == b.Tenant
	// An organization left empty is the tenant's own (DESIGN §4 default);
	// two empty ones must not count as one organization (fail closed).
	orgA, orgB := a.Organization, b.Organization
	if orgA == "" {
		orgA = "tenant:" + a.Tenant
	}
	if orgB == "" {
		orgB = "tenant:" + b.Tenant
	}
	switch {
	case b.DataClass == "restricted" && !sameTenant:
		return Decision{Host, DefaultTable[0].Ref()}
	case a.DataClass != b.DataClass || a.Privilege != b.Privilege:
		return Decision{VM, DefaultTable[1].Ref()}
	case sameTenant:
		return Decision{Container, DefaultTable[2].Ref()}
	case orgA == orgB:
		return Decision{Container, DefaultTable[3].Ref()}
	case a.Trust == "trusted":
		return Decision{Sandbox, DefaultTable[4].Ref()}
	default:
		return Decision{VM, DefaultTable[5].Ref()}
	}
}

// FromPolicies compiles the operator rules of every Policy, in order, into
// a rule set (the default table always comes after them).
func FromPolicies(policies []v1.Policy) (*Rules, error) {
	var rules []v1.Rule
	for _, p := range policies {
		rules = append(rules, p.Spec.Rules...)
	}
	m, err := Compile(rules)
	if err != nil {
		return nil, err
	}
	return &Rules{Operator: m}, nil
}
