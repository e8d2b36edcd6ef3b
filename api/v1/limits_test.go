package v1

import (
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBurstLimitsAndNoisyPolicy decodes manifests with resources.limits and
// spec.noisy: the valid ones load, each mistake names its field and fix.
func TestBurstLimitsAndNoisyPolicy(t *testing.T) {
	const base = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: t}
spec: {nodes: [{name: n1, capacity: {cpu: 2, memory: 1Gi}}]}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
---
`
	tests := []struct {
		name, doc string
		want      []string
	}{{
		name: "burstable workload and a ladder",
		doc: `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: acme}
spec: {image: busybox, resources: {cpu: 500m, memory: 64Mi, pids: 32, limits: {cpu: 2, memory: 128Mi}}}
---
apiVersion: rung.dev/v1
kind: Policy
metadata: {name: site}
spec: {noisy: {threshold: 20, actions: [throttle, report, move], interval: 1s, hold: 2}}
`,
	}, {
		name: "limit below its request, and one without a request",
		doc: `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: acme}
spec: {image: busybox, resources: {cpu: 500m, limits: {cpu: 100m, memory: 1Gi}}}
`,
		want: []string{
			"Workload acme/web: spec.resources.limits.cpu: 100m is below the request 500m (fix: raise the limit to at least spec.resources.cpu, or lower the request)",
			"Workload acme/web: spec.resources.limits.memory: a limit without a request (fix: set spec.resources.memory (the guaranteed request) too)",
		},
	}, {
		name: "a bad ladder",
		doc: `apiVersion: rung.dev/v1
kind: Policy
metadata: {name: site}
spec: {noisy: {threshold: 120, actions: [throtle, report, report], interval: forever}}
`,
		want: []string{
			"Policy site: spec.noisy.threshold: 120 is out of range (fix: use a percentage from 1 to 99, e.g. 20)",
			`Policy site: spec.noisy.actions[0]: "throtle" is not an action (fix: did you mean "throttle"?)`,
			`Policy site: spec.noisy.actions[2]: "report" is listed twice (fix: list each action once)`,
			`Policy site: spec.noisy.interval: "forever" is not a duration from 100ms to 1h (fix: use a Go duration such as "2s")`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Decode("m.yaml", []byte(base+tt.doc))
			if err == nil {
				set.ApplyDefaults()
				err = set.Validate()
			}
			var got []string
			for _, e := range unwrapErrs(err) {
				got = append(got, fileLineRE.ReplaceAllString(e.Error(), ""))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func unwrapErrs(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapErrs(e)...)
		}
		return out
	}
	return []error{err}
}

var fileLineRE = regexp.MustCompile(`^m\.yaml:\d+: `)
