package policy

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"

	v1 "rung.dev/rung/api/v1"
)

// Limits on operator rules, so that a careless rule cannot stall admission.
const (
	// MaxRuleLength is the longest deny expression accepted, in bytes.
	MaxRuleLength = 4 << 10
	// MaxRuleCost is the most one evaluation may cost, in CEL cost units;
	// an evaluation that reaches it denies (fail closed).
	MaxRuleCost = 100_000
)

// Rule is an operator admission rule. When Deny evaluates to true, the
// subject gets a finding with the rule's ID, title, severity and fix. A
// rule adds to the built-in checks; it cannot remove one, and its ID may
// not reuse a built-in ID.
//
// Deny is a CEL expression over:
//   - tenant: {name, organization, trust, labels}
//   - workload (On "workload"): {name, tenant, image, command, args, env,
//     replicas, dataClass, privilege, capabilities, labels, isolation,
//     resources: {cpu (cores, double), memory (bytes, int), pids}}
//   - image (On "image"): {ref, repository, digest, user, exposedPorts,
//     healthcheck, created (timestamp), env, labels, os,
//     packages: [{name, version, source, ecosystem}],
//     vulnerabilities: [{id, package, version, fixedIn, severity}],
//     signed (bool)}
type Rule struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Severity Severity `json:"severity"`
	Fix      string   `json:"fix"`
	// On is KindWorkload (the default) or KindImage.
	On   string `json:"on,omitempty"`
	Deny string `json:"deny"`
}

type compiledRule struct {
	check Check
	on    string
	deny  string
	prg   cel.Program
}

var ruleID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,63}$`)

// RuleError is an operator rule that cannot be used.
type RuleError struct {
	Rule  string // the rule's ID, or "#N" (1-based)
	Field string
	Err   error
}

// Error implements error.
func (e *RuleError) Error() string {
	return fmt.Sprintf("admission rule %s: %s: %v", e.Rule, e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *RuleError) Unwrap() error { return e.Err }

// Is reports ErrInvalidRule.
func (e *RuleError) Is(target error) bool { return target == ErrInvalidRule }

func compileRules(rules []Rule, builtin []string) ([]compiledRule, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	envs := map[string]*cel.Env{}
	for _, kind := range []string{KindWorkload, KindImage} {
		env, err := newEnv(kind)
		if err != nil {
			return nil, fmt.Errorf("admission rules: build CEL environment: %w", err)
		}
		envs[kind] = env
	}
	var (
		out  []compiledRule
		errs []error
		seen = map[string]bool{}
	)
	for i, r := range rules {
		name := r.ID
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		fail := func(field string, err error) { errs = append(errs, &RuleError{Rule: name, Field: field, Err: err}) }
		switch {
		case !ruleID.MatchString(r.ID):
			fail("id", errors.New("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter"))
			continue
		case slices.Contains(builtin, r.ID):
			fail("id", fmt.Errorf("%s is a built-in check; built-in checks cannot be replaced", r.ID))
			continue
		case seen[r.ID]:
			fail("id", errors.New("defined twice"))
			continue
		}
		seen[r.ID] = true
		on := cmp.Or(r.On, KindWorkload)
		env, ok := envs[on]
		if !ok {
			fail("on", fmt.Errorf("%q: use %s or %s", r.On, KindWorkload, KindImage))
			continue
		}
		if strings.TrimSpace(r.Title) == "" {
			fail("title", errors.New("empty"))
			continue
		}
		if len(r.Deny) > MaxRuleLength {
			fail("deny", fmt.Errorf("%d bytes, the limit is %d", len(r.Deny), MaxRuleLength))
			continue
		}
		ast, iss := env.Compile(r.Deny)
		if iss.Err() != nil {
			fail("deny", iss.Err())
			continue
		}
		if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
			fail("deny", fmt.Errorf("must be a bool, is %s", t))
			continue
		}
		prg, err := env.Program(ast, cel.CostLimit(MaxRuleCost))
		if err != nil {
			fail("deny", err)
			continue
		}
		sev := r.Severity
		if sev == SeverityUnknown {
			sev = SeverityMedium
		}
		out = append(out, compiledRule{
			check: Check{ID: r.ID, Title: r.Title, Severity: sev, Fix: cmp.Or(r.Fix, "see the operator's policy"), Blocks: BlockAlways},
			on:    on, deny: r.Deny, prg: prg,
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func newEnv(kind string) (*cel.Env, error) {
	obj := cel.MapType(cel.StringType, cel.DynType)
	opts := []cel.EnvOption{cel.Variable("tenant", obj), ext.Strings()}
	switch kind {
	case KindWorkload:
		opts = append(opts, cel.Variable("workload", obj))
	case KindImage:
		opts = append(opts, cel.Variable("image", obj))
	}
	return cel.NewEnv(opts...)
}

// evalRules runs the operator rules for kind and adds their findings to d.
// A rule that fails to evaluate denies, naming the error (fail closed).
func (e *Engine) evalRules(d *Decision, kind string, vars map[string]any) {
	for _, r := range e.rules {
		if r.on != kind {
			continue
		}
		d.Checked = append(d.Checked, r.check.ID)
		out, _, err := r.prg.Eval(vars)
		if err != nil {
			d.Findings = append(d.Findings, r.check.finding("rule could not be evaluated (denied): "+err.Error(), ""))
			continue
		}
		deny, ok := out.Value().(bool)
		if !ok {
			d.Findings = append(d.Findings, r.check.finding(fmt.Sprintf("rule returned %v, not a bool (denied)", out.Value()), ""))
			continue
		}
		if deny {
			d.Findings = append(d.Findings, r.check.finding("denied by operator rule: "+r.deny, ""))
		}
	}
}

func tenantVars(t *v1.Tenant) map[string]any {
	return map[string]any{
		"name":         t.Metadata.Name,
		"organization": cmp.Or(t.Spec.Organization, t.Metadata.Name),
		"trust":        string(t.Spec.Trust),
		"labels":       orEmpty(t.Metadata.Labels),
	}
}

func workloadVars(in *WorkloadInput) map[string]any {
	w := &in.Workload
	res := map[string]any{"cpu": 0.0, "memory": int64(0), "pids": w.Spec.Resources.PIDs}
	if q := w.Spec.Resources.CPU; q != nil {
		res["cpu"] = q.AsApproximateFloat64()
	}
	if q := w.Spec.Resources.Memory; q != nil {
		res["memory"] = q.Value()
	}
	replicas := int64(1)
	if w.Spec.Replicas != nil {
		replicas = int64(*w.Spec.Replicas)
	}
	return map[string]any{
		"tenant": tenantVars(&in.Tenant),
		"workload": map[string]any{
			"name":         w.Metadata.Name,
			"tenant":       w.Metadata.Tenant,
			"image":        w.Spec.Image,
			"command":      orNone(w.Spec.Command),
			"args":         orNone(w.Spec.Args),
			"env":          orEmpty(w.Spec.Env),
			"replicas":     replicas,
			"dataClass":    string(w.Spec.DataClass),
			"privilege":    string(w.Spec.Privilege),
			"capabilities": orNone(w.Spec.Capabilities),
			"labels":       orEmpty(w.Metadata.Labels),
			"isolation":    string(w.Spec.Isolation.Minimum),
			"resources":    res,
		},
	}
}

func imageVars(in *ImageInput) map[string]any {
	f := &in.Facts
	pkgs := make([]any, len(f.Packages))
	for i, p := range f.Packages {
		pkgs[i] = map[string]any{"name": p.Name, "version": p.Version, "source": p.Source, "ecosystem": p.Ecosystem}
	}
	vulns := make([]any, len(f.Vulnerabilities))
	for i, v := range f.Vulnerabilities {
		vulns[i] = map[string]any{"id": v.ID, "package": v.Package, "version": v.Version, "fixedIn": v.FixedIn, "severity": v.Severity.String()}
	}
	return map[string]any{
		"tenant": tenantVars(&in.Tenant),
		"image": map[string]any{
			"ref":             in.Ref,
			"repository":      in.Repository,
			"digest":          in.Digest,
			"user":            f.User,
			"exposedPorts":    orNone(f.ExposedPorts),
			"healthcheck":     f.Healthcheck,
			"created":         f.Created,
			"env":             orNone(f.Env),
			"labels":          orEmpty(f.Labels),
			"os":              f.OS,
			"packages":        pkgs,
			"vulnerabilities": vulns,
			"signed":          in.Signature != nil && in.Signature.Verified,
		},
	}
}

func orNone(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
