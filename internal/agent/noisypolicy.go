package agent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/noisy"
)

// NoisyPolicy is the site's noisy-neighbour policy from the Policies:
// the spec.noisy of the first Policy (by name) that has one; nil for
// none.
func NoisyPolicy(policies []v1.Policy) (*noisy.Policy, error) {
	ps := slices.Clone(policies)
	slices.SortFunc(ps, func(a, b v1.Policy) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	for _, p := range ps {
		n := p.Spec.Noisy
		if n == nil {
			continue
		}
		actions, err := noisy.ParseActions(n.Actions)
		if err != nil {
			return nil, fmt.Errorf("policy %s: spec.noisy: %w", p.Metadata.Name, err)
		}
		out := noisy.Policy{Threshold: float64(n.Threshold) / 100, Actions: actions, Hold: n.Hold, Calm: n.Calm}
		if n.Interval != "" {
			d, err := time.ParseDuration(n.Interval)
			if err != nil {
				return nil, fmt.Errorf("policy %s: spec.noisy.interval: %w", p.Metadata.Name, err)
			}
			out.Interval = d
		}
		if err := out.Validate(); err != nil {
			return nil, fmt.Errorf("policy %s: spec.noisy: %w", p.Metadata.Name, err)
		}
		return &out, nil
	}
	return nil, nil
}
