package server_test

import (
	"strings"
	"testing"
)

// TestDashboardVolumes: /ui/volumes lists each tenant's volumes (a
// perReplica Volume as its instances) with size, class, binding and the
// replicas that mount them, to the operator; a tenant sees only its own.
func TestDashboardVolumes(t *testing.T) {
	e := newEnv(t).seed()
	applyVolumes(t, e)
	for _, c := range []struct {
		who        string
		want, lack []string
	}{
		{"operator", []string{"Tenant biology", "Tenant geology", "seqdata-0", "seqdata-1", "confidential", "biology-archive-1", "cores", "not bound yet"}, nil},
		{"viewer", []string{"Tenant biology", "seqdata-0", "5Gi", "biology-archive-0"}, []string{"geology", "cores"}},
		{"geo-admin", []string{"Tenant geology", "cores", "2Gi", "no workload mounts it"}, []string{"biology", "seqdata", "archive"}},
	} {
		r := e.do(c.who, "GET", "/ui/volumes", nil)
		page := string(r.body)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", c.who, r.status, page)
		}
		for _, w := range c.want {
			if !strings.Contains(page, w) {
				t.Errorf("%s's volumes page lacks %q:\n%s", c.who, w, page)
			}
		}
		for _, l := range c.lack {
			if strings.Contains(page, l) {
				t.Errorf("%s's volumes page shows %q:\n%s", c.who, l, page)
			}
		}
	}
	r := e.do("admin", "GET", "/ui/workloads/biology/archive", nil)
	if page := string(r.body); r.status != 200 || !strings.Contains(page, "rack in [r2]") || !strings.Contains(page, "seqdata</a> (one per replica)") {
		t.Errorf("archive's page: %d\n%s", r.status, page)
	}
}
