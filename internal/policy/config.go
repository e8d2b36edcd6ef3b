package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
)

// FromPolicies returns the admission configuration written in the
// operator's Policies (spec.admission): every rule of every policy, in
// order, and the smallest maxImageAge any of them sets (policies can only
// tighten one another). Errors wrap ErrInvalidRule and name the policy and
// rule; the CEL expressions are compiled by New.
func FromPolicies(ps []v1.Policy) (Config, error) {
	var (
		cfg  Config
		errs []error
	)
	for _, p := range ps {
		a := p.Spec.Admission
		for i, r := range a.Rules {
			name := r.ID
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			rule := Rule{ID: r.ID, Title: r.Title, Fix: r.Fix, On: r.On, Deny: r.Deny}
			if r.Severity != "" {
				sev, err := ParseSeverity(r.Severity)
				if err != nil {
					errs = append(errs, fmt.Errorf("policy %s: %w", p.Metadata.Name, &RuleError{Rule: name, Field: "severity", Err: err}))
					continue
				}
				rule.Severity = sev
			}
			cfg.Rules = append(cfg.Rules, rule)
		}
		if a.MaxImageAge != "" {
			d, err := time.ParseDuration(a.MaxImageAge)
			if err == nil && d <= 0 {
				err = errors.New("must be positive")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("policy %s: spec.admission.maxImageAge %q: %w: %w", p.Metadata.Name, a.MaxImageAge, ErrInvalidRule, err))
				continue
			}
			if cfg.MaxImageAge == 0 || d < cfg.MaxImageAge {
				cfg.MaxImageAge = d
			}
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// Merge adds other's rules to c and keeps the smaller image age.
func (c Config) Merge(other Config) Config {
	out := Config{Rules: append(append([]Rule(nil), c.Rules...), other.Rules...), MaxImageAge: c.MaxImageAge}
	if other.MaxImageAge > 0 && (out.MaxImageAge <= 0 || other.MaxImageAge < out.MaxImageAge) {
		out.MaxImageAge = other.MaxImageAge
	}
	return out
}

// TenantBlockSeverity is t's spec.images.blockSeverity, or
// DefaultBlockSeverity when it sets none. The threshold applies to
// vulnerabilities and to every check with BlockAtSeverity.
func TenantBlockSeverity(t *v1.Tenant) (Severity, error) {
	if t.Spec.Images.BlockSeverity == "" {
		return DefaultBlockSeverity, nil
	}
	return ParseSeverity(t.Spec.Images.BlockSeverity)
}

// blockSeverity is the threshold of a decision: override when set, else
// t's. A threshold that does not parse (Validate refuses it earlier) blocks
// everything: fail closed.
func blockSeverity(t *v1.Tenant, override *Severity) Severity {
	if override != nil {
		return *override
	}
	sev, err := TenantBlockSeverity(t)
	if err != nil {
		return SeverityUnknown
	}
	return sev
}

// registryAllowed reports whether an image (ref as written; repository
// its canonical repository, "" for local sources) is under one of the
// tenant's registry prefixes. An empty allow-list allows any registry.
func registryAllowed(ref, repository string, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, prefix := range prefixes {
		if repository != "" && strings.HasPrefix(repository+"/", prefix) || strings.HasPrefix(ref, prefix) {
			return true
		}
	}
	return false
}

// isRegistryRef mirrors the image store's rule: a first path component
// with a dot or a port, or localhost, names a registry host; oci-layout:
// and docker-archive: sources are local.
func isRegistryRef(s string) bool {
	if strings.HasPrefix(s, "oci-layout:") || strings.HasPrefix(s, "docker-archive:") {
		return false
	}
	host, _, ok := strings.Cut(s, "/")
	return ok && (strings.ContainsAny(host, ".:") || host == "localhost")
}
