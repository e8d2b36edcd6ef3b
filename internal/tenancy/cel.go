package tenancy

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	v1 "rung.dev/rung/api/v1"
)

// Limits on operator rules, so that a hostile or careless rule cannot stall
// the scheduler, which evaluates every rule for many pairs of replicas.
const (
	// MaxWhenLength is the longest `when` expression accepted, in bytes.
	MaxWhenLength = 4 << 10
	// MaxCost is the most one evaluation of a rule may cost, in CEL cost
	// units (about one unit per operation, string byte scans and list
	// elements counted). A rule whose worst case exceeds it is rejected at
	// load; an evaluation that reaches it is stopped with ErrCostLimit.
	MaxCost = 10_000
)

// Bounds on the inputs assumed by the static cost estimate: those of
// Kubernetes names and labels. A pair within them is evaluated without cost
// tracking, since the estimate already proves it cheap; any other pair is
// evaluated under the runtime limit.
const (
	maxLabels        = 64
	maxLabelKeyLen   = 253 + 1 + 63 // DNS subdomain prefix, '/', name
	maxLabelValueLen = 63
	maxStringLen     = 253

	maxLabelsSize   = maxLabels * (maxLabelKeyLen + maxLabelValueLen)
	maxTenantSize   = 3*maxStringLen + maxLabelsSize
	maxWorkloadSize = maxStringLen + maxLabelsSize
	maxPartySize    = maxTenantSize + maxWorkloadSize + 3*maxStringLen
)

// ErrCostLimit is returned by Match when a rule's evaluation reaches MaxCost.
var ErrCostLimit = errors.New("cost limit exceeded")

// RuleError is a policy rule that does not compile.
type RuleError struct {
	Rule  string // the rule's name, or "#N" (1-based) when it has none
	Field string // the field at fault: "name", "when" or "require"
	Err   error
}

// Error implements error: "policy rule NAME: FIELD: reason".
func (e *RuleError) Error() string {
	return fmt.Sprintf("policy rule %s: %s: %v", e.Rule, e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *RuleError) Unwrap() error { return e.Err }

// The CEL view of a Party. The Go type names become the CEL type names
// (tenancy.party, tenancy.tenant, tenancy.workload) and are shown in type
// errors; the cel tags are the field names rules use.
type (
	party struct {
		Tenant    tenant   `cel:"tenant"`
		Workload  workload `cel:"workload"`
		DataClass string   `cel:"dataClass"`
		Privilege string   `cel:"privilege"`
		Trust     string   `cel:"trust"` // shortcut of tenant.trust
	}
	tenant struct {
		Name         string            `cel:"name"`
		Organization string            `cel:"organization"`
		Trust        string            `cel:"trust"`
		Labels       map[string]string `cel:"labels"`
	}
	workload struct {
		Name   string            `cel:"name"`
		Labels map[string]string `cel:"labels"`
	}
)

// set fills v from p without allocating.
func (v *party) set(p *Party) {
	*v = party{
		Tenant: tenant{
			Name:         p.Tenant,
			Organization: p.Organization,
			Trust:        p.Trust,
			Labels:       p.TenantLabels,
		},
		Workload:  workload{Name: p.Workload, Labels: p.WorkloadLabels},
		DataClass: p.DataClass,
		Privilege: p.Privilege,
		Trust:     p.Trust,
	}
}

// The CEL types of party, tenant and workload, as NativeTypes names them.
var (
	partyType    = types.NewObjectType("tenancy.party")
	tenantType   = types.NewObjectType("tenancy.tenant")
	workloadType = types.NewObjectType("tenancy.workload")
)

// pair is the activation of one evaluation: the variables attacker and
// victim. Pairs are pooled so that Match does not allocate for them.
type pair struct {
	attacker, victim party
}

// ResolveName implements interpreter.Activation.
func (a *pair) ResolveName(name string) (any, bool) {
	switch name {
	case "attacker":
		return &a.attacker, true
	case "victim":
		return &a.victim, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *pair) Parent() interpreter.Activation { return nil }

// Compile compiles operator rules (Policy spec.rules) into Matchers, in
// order. A rule's `when` is a CEL expression over the variables attacker
// and victim that must be a bool; its `require` must be a tier. Every
// faulty rule is reported, each as a *RuleError, joined.
func Compile(rules []v1.Rule) ([]Matcher, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("policy rules: build CEL environment: %w", err)
	}
	pool := &sync.Pool{New: func() any { return new(pair) }}
	var (
		out  = make([]Matcher, 0, len(rules))
		errs []error
		seen = make(map[string]bool, len(rules))
	)
	for i, r := range rules {
		id := r.Name
		if id == "" {
			id = fmt.Sprintf("#%d", i+1)
			errs = append(errs, &RuleError{Rule: id, Field: "name", Err: errors.New("missing")})
		} else if seen[id] {
			errs = append(errs, &RuleError{Rule: id, Field: "name", Err: errors.New("duplicate")})
		}
		seen[id] = true

		tier, err := ParseTier(r.Require)
		if err == nil && tier == None {
			err = errors.New("missing: use one of container, sandbox, vm, host")
		}
		if err != nil {
			errs = append(errs, &RuleError{Rule: id, Field: "require", Err: err})
		}

		m := &rule{name: r.Name, require: tier, pairs: pool}
		if err := m.compile(env, r.When); err != nil {
			errs = append(errs, &RuleError{Rule: id, Field: "when", Err: err})
			continue
		}
		out = append(out, m)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// newEnv declares attacker and victim as typed objects, so that a
// misspelt variable or field is a compile error rather than a runtime one.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(ext.ParseStructTags(true), reflect.TypeFor[party]()),
		cel.Variable("attacker", partyType),
		cel.Variable("victim", partyType),
		cel.OptionalTypes(), // labels.?key.orValue("")
		cel.ParserExpressionSizeLimit(MaxWhenLength),
	)
}

// compile compiles and checks a `when` expression, rejects it if its
// worst case exceeds MaxCost, and plans it twice: with and without the
// runtime cost limit.
func (r *rule) compile(env *cel.Env, when string) error {
	if when == "" {
		return errors.New("missing")
	}
	if len(when) > MaxWhenLength {
		return fmt.Errorf("%d bytes long, the limit is %d", len(when), MaxWhenLength)
	}
	checked, iss := env.Compile(when)
	if err := iss.Err(); err != nil {
		return err
	}
	if t := checked.OutputType(); !t.IsExactType(types.BoolType) {
		return fmt.Errorf("result is %s, want bool", t)
	}
	est, err := env.EstimateCost(checked, sizes{})
	if err != nil {
		return fmt.Errorf("estimate cost: %w", err)
	}
	if est.Max > MaxCost {
		return fmt.Errorf("worst-case cost %s exceeds the limit %d", costString(est.Max), MaxCost)
	}
	r.worst = est.Max
	if r.fast, err = env.Program(checked, cel.EvalOptions(cel.OptOptimize)); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if r.limited, err = env.Program(checked, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(MaxCost)); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	r.readsLabels = readsLabels(checked.NativeRep())
	return nil
}

// readsLabels reports whether an expression can look into labels: it has a
// map-typed node (only labels are maps), or uses a whole object other than
// to select a field from it (object equality compares the labels too).
func readsLabels(a *ast.AST) bool {
	selected := map[int64]bool{}
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() == ast.SelectKind {
			selected[e.AsSelect().Operand().ID()] = true
		}
	}))
	for id, t := range a.TypeMap() {
		switch t.Kind() {
		case types.MapKind:
			return true
		case types.StructKind:
			if !selected[id] {
				return true
			}
		}
	}
	return false
}

// withinBounds reports whether p is within the bounds the static cost
// estimate assumed; labels only if the rule reads them.
func withinBounds(p *Party, labels bool) bool {
	for _, s := range [...]string{p.Tenant, p.Organization, p.Trust, p.Workload, p.DataClass, p.Privilege} {
		if len(s) > maxStringLen {
			return false
		}
	}
	return !labels || labelsWithinBounds(p.TenantLabels) && labelsWithinBounds(p.WorkloadLabels)
}

func labelsWithinBounds(l map[string]string) bool {
	if len(l) > maxLabels {
		return false
	}
	for k, v := range l {
		if len(k) > maxLabelKeyLen || len(v) > maxLabelValueLen {
			return false
		}
	}
	return true
}

func costString(c uint64) string {
	if c == ^uint64(0) {
		return "unbounded"
	}
	return fmt.Sprint(c)
}

// sizes bounds the inputs for the static cost estimate (cost.Estimator).
type sizes struct{}

// EstimateSize bounds the values reached from attacker and victim: labels,
// strings, and the objects themselves (which equality compares whole).
func (sizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	path := n.Path()
	if len(path) == 0 {
		return nil
	}
	var max uint64
	switch last := path[len(path)-1]; {
	case last == "@keys":
		max = maxLabelKeyLen
	case last == "@values":
		max = maxLabelValueLen
	case last == "labels":
		max = maxLabels
	case n.Type().IsExactType(types.StringType):
		max = maxStringLen
	case n.Type().IsExactType(partyType):
		max = maxPartySize
	case n.Type().IsExactType(tenantType):
		max = maxTenantSize
	case n.Type().IsExactType(workloadType):
		max = maxWorkloadSize
	default:
		return nil
	}
	s := cost.RangedSizeEstimate(0, max)
	return &s
}

// EstimateCallCost leaves every function to the standard estimate.
func (sizes) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// rule is a compiled operator rule.
type rule struct {
	name    string
	require Tier
	// fast has no runtime cost tracking (which would triple the time of a
	// simple rule); it runs only pairs within the bounds the static
	// estimate assumed. limited runs every other pair under MaxCost.
	fast, limited cel.Program
	worst         uint64     // static worst-case cost, at most MaxCost
	readsLabels   bool       // whether label sizes matter to the bounds
	pairs         *sync.Pool // of *pair, shared by the rules of one Compile
}

// Name implements Matcher.
func (r *rule) Name() string { return r.name }

// Require implements Matcher.
func (r *rule) Require() Tier { return r.require }

// Match implements Matcher. An evaluation error (including ErrCostLimit) is
// returned, and the caller must treat the pair as failing closed.
func (r *rule) Match(attacker, victim *Party) (bool, error) {
	if attacker == nil || victim == nil {
		return false, errors.New("evaluate: nil party")
	}
	prg := r.limited
	if withinBounds(attacker, r.readsLabels) && withinBounds(victim, r.readsLabels) {
		prg = r.fast
	}
	return r.eval(prg, attacker, victim)
}

// eval evaluates one of the rule's programs for the pair.
func (r *rule) eval(prg cel.Program, attacker, victim *Party) (bool, error) {
	act := r.pairs.Get().(*pair)
	act.attacker.set(attacker)
	act.victim.set(victim)
	out, _, err := prg.Eval(act)
	*act = pair{} // drop references to the parties' maps
	r.pairs.Put(act)
	if err == nil {
		b, ok := out.(types.Bool)
		if ok {
			return bool(b), nil
		}
		err = fmt.Errorf("result is %s, want bool", out.Type())
	} else if c, ok := errors.AsType[interpreter.EvalCancelledError](err); ok && c.Cause == interpreter.CostLimitExceeded {
		err = fmt.Errorf("%w (%d)", ErrCostLimit, MaxCost)
	}
	return false, fmt.Errorf("evaluate for attacker %s/%s, victim %s/%s: %w",
		attacker.Tenant, attacker.Workload, victim.Tenant, victim.Workload, err)
}
