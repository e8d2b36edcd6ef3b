package v1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVolumeValidate(t *testing.T) {
	const base = `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
spec:
  placement: {domains: {region: [eu-west, eu-north]}}
---
`
	tests := []struct {
		name, doc string
		want      []string
	}{{
		name: "valid",
		doc: `apiVersion: rung.dev/v1
kind: Volume
metadata: {name: pgdata, tenant: acme}
spec: {size: 1Gi, dataClass: restricted}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: acme}
spec:
  image: busybox:latest
  replicas: 3
  volumes:
  - {name: pgdata, mountPath: /data, perReplica: true}
  - {name: shared, mountPath: /shared, readOnly: true}
  placement: {domains: {region: [eu-west]}}
`,
	}, {
		name: "bad volume",
		doc: `apiVersion: rung.dev/v1
kind: Volume
metadata: {name: pgdata, tenant: acme}
spec: {size: 1Mi, dataClass: secret}
`,
		want: []string{
			`spec.size: 1Mi is smaller than 16Mi (fix: use at least 16Mi)`,
			`spec.dataClass: "secret" is not a data class`,
		},
	}, {
		name: "bad mounts",
		doc: `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: acme}
spec:
  image: busybox:latest
  replicas: 2
  volumes:
  - {name: a, mountPath: /proc/x, perReplica: true}
  - {name: b, mountPath: /dev, perReplica: true}
  - {name: c, mountPath: /data}
`,
		want: []string{
			`spec.volumes[0].mountPath: "/proc/x" is inside /proc`,
			`spec.volumes[1].mountPath: "/dev" is inside /dev`,
			`spec.volumes[2].readOnly: volume c would be mounted read-write by 2 replicas (fix: set perReplica: true`,
		},
	}, {
		name: "two writers",
		doc: `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: a, tenant: acme}
spec: {image: busybox:latest, volumes: [{name: v, mountPath: /data}]}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: b, tenant: acme}
spec: {image: busybox:latest, volumes: [{name: v, mountPath: /data}]}
`,
		want: []string{`spec.volumes[0].readOnly: volume v is mounted read-write by workload a too`},
	}, {
		name: "residency wider than the tenant's",
		doc: `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: a, tenant: acme}
spec:
  image: busybox:latest
  placement: {domains: {region: [us-east], rack: []}, bogus: 1}
`,
		want: []string{
			`spec.placement.bogus: unknown field`,
		},
	}, {
		name: "residency outside the tenant's",
		doc: `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: a, tenant: acme}
spec:
  image: busybox:latest
  placement: {domains: {region: [us-east], rack: [], planet: [earth]}}
`,
		want: []string{
			`spec.placement.domains.planet: unknown level "planet"`,
			`spec.placement.domains.rack: no domain listed: nothing could be placed`,
			`spec.placement.domains.region[0]: region=us-east is outside tenant acme's residency (eu-west, eu-north)`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Decode("test.yaml", []byte(base+tt.doc))
			if err == nil {
				set.ApplyDefaults()
				err = set.Validate()
			}
			var got []string
			if err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					for _, w := range tt.want {
						if strings.Contains(line, w) {
							got = append(got, w)
						}
					}
				}
				if len(got) != len(tt.want) {
					t.Logf("errors:\n%v", err)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestEffectivePlacement(t *testing.T) {
	ten := Placement{Domains: map[string][]string{"region": {"eu-west", "eu-north"}}}
	w := Placement{Domains: map[string][]string{"region": {"eu-west", "us-east"}, "rack": {"r1"}}}
	got := EffectivePlacement(ten, w)
	want := Placement{Domains: map[string][]string{"region": {"eu-west"}, "rack": {"r1"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	if !EffectivePlacement(Placement{}, Placement{}).IsZero() {
		t.Error("no residency should stay none")
	}
}
