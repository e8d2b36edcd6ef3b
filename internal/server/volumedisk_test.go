package server

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
)

// TestVolumeDisks: each node's room is what it reports (free and what its
// images hold) less the full size of the volumes bound to it; one machine
// standing for every node counts every such binding against its one disk.
func TestVolumeDisks(t *testing.T) {
	set, err := v1.Decode("t.yaml", []byte(`apiVersion: rung.dev/v1
kind: Volume
metadata: {name: pg, tenant: acme}
spec: {size: 1Gi}
---
apiVersion: rung.dev/v1
kind: Volume
metadata: {name: logs, tenant: acme}
spec: {size: 2Gi}
`))
	if err != nil {
		t.Fatal(err)
	}
	const gi = int64(1) << 30
	bound := map[string]string{"acme/pg-0": "a", "acme/pg-1": "b", "acme/logs": "a", "acme/pg-2": "c"}
	tests := []struct {
		name string
		r    diskReports
		want map[string]scheduler.Disk
	}{{
		name: "no reports: nothing checked",
		want: map[string]scheduler.Disk{},
	}, {
		name: "by node",
		r:    diskReports{byNode: map[string]wire.VolumeDisk{"a": {Capacity: 100 * gi, Free: 10 * gi, Held: gi}, "b": {Free: 5 * gi}}},
		want: map[string]scheduler.Disk{"a": {Free: 11 * gi, Bound: 3 * gi}, "b": {Free: 5 * gi, Bound: gi}},
	}, {
		name: "one machine for the others",
		r:    diskReports{byNode: map[string]wire.VolumeDisk{"a": {Free: 10 * gi}}, all: &wire.VolumeDisk{Free: 7 * gi, Held: gi}},
		want: map[string]scheduler.Disk{"a": {Free: 10 * gi, Bound: 3 * gi}, "b": {Free: 8 * gi, Bound: 2 * gi, Shared: "local"}, "c": {Free: 8 * gi, Bound: 2 * gi, Shared: "local"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := volumeDisks(set, bound, tt.r, []string{"a", "b", "c"})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
