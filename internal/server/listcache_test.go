package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
)

// unlimitedEnv is a seeded env whose tokens are not rate-limited (the
// tests' listers send as fast as they can).
func unlimitedEnv(t *testing.T) *env {
	return newEnvWith(t, func(c *server.Config) { c.Limits = server.Limits{TokenRate: 1e6, TokenBurst: 1e6} }).seed()
}

// listers lists kind of tenant as who until ctx ends, so that lists
// share snapshots with the test's own; failures go to t.
func listers(ctx context.Context, t *testing.T, c *client.Client, tenant string, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := c.List(ctx, v1.KindWorkload, tenant); err != nil && ctx.Err() == nil {
					t.Errorf("background list: %v", err)
					return
				}
			}
		})
	}
	return &wg
}

// TestListSeesWrites: every write that returned is in the next list, also
// while other clients list the same directory all along (and so keep
// snapshots of it in use).
func TestListSeesWrites(t *testing.T) {
	t.Parallel()
	e := unlimitedEnv(t)
	admin := e.client("admin")
	ctx, stop := context.WithCancel(t.Context())
	wg := listers(ctx, t, e.client("viewer"), "biology", 4)
	t.Cleanup(func() { stop(); wg.Wait() })
	for i := range 40 {
		name := fmt.Sprintf("s%02d", i%8)
		replicas := 1 + i/8%2
		if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/"+name, workloadJSON("biology", name, replicas)); r.status != http.StatusCreated && r.status != http.StatusOK {
			t.Fatalf("apply %s: %d %s", name, r.status, r.body)
		}
		if i%3 == 2 { // a delete too
			if r := e.do("admin", "DELETE", "/v1/tenants/biology/workloads/"+name, nil); r.status != http.StatusOK {
				t.Fatalf("delete %s: %d %s", name, r.status, r.body)
			}
		}
		l, err := admin.List(ctx, v1.KindWorkload, "biology")
		if err != nil {
			t.Fatal(err)
		}
		var got *v1.Workload
		for _, it := range l.Items {
			var w v1.Workload
			if err := json.Unmarshal(it.Object, &w); err != nil {
				t.Fatal(err)
			}
			if w.Metadata.Name == name {
				got = &w
			}
		}
		switch {
		case i%3 == 2 && got != nil:
			t.Fatalf("write %d: %s deleted, still listed", i, name)
		case i%3 != 2 && got == nil:
			t.Fatalf("write %d: %s applied, not listed", i, name)
		case i%3 != 2 && *got.Spec.Replicas != replicas:
			t.Fatalf("write %d: %s listed with %d replicas, applied %d", i, name, *got.Spec.Replicas, replicas)
		}
	}
}

// TestListPagesConsistent: while a writer updates the tenant's workloads
// one after another, round after round, every list read in pages of 2 is
// one snapshot: no page fails, every page has the first one's revision, no
// item is newer, and the rounds seen fall in order (the first k workloads
// at round g+1, the rest at g), which pages read at different times would
// break.
func TestListPagesConsistent(t *testing.T) {
	t.Parallel()
	e := unlimitedEnv(t)
	const n = 7
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
	}
	apply := func(c *client.Client, name string, round int) error {
		replicas := 1
		w := v1.Workload{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkload},
			Metadata: v1.ObjectMeta{Name: name, Tenant: "biology", Labels: map[string]string{"round": fmt.Sprint(round)}},
			Spec:     v1.WorkloadSpec{Image: "busybox:latest", Replicas: &replicas},
		}
		_, err := c.Apply(t.Context(), &w)
		return err
	}
	admin := e.client("admin")
	for _, name := range names {
		if err := apply(admin, name, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	wg.Go(func() {
		for round := 1; ctx.Err() == nil; round++ {
			for _, name := range names {
				if err := apply(admin, name, round); err != nil && ctx.Err() == nil {
					t.Errorf("writer: %v", err)
					return
				}
			}
		}
	})
	listWg := listers(ctx, t, e.client("viewer"), "biology", 3)
	t.Cleanup(listWg.Wait)

	viewer := e.client("viewer")
	changed := 0
	var lastRev int64
	for try := 0; try < 30; try++ {
		var items []wire.Item
		var rev int64
		cont := ""
		for page := 0; ; page++ {
			l, err := viewer.ListPage(t.Context(), v1.KindWorkload, "biology", 2, cont)
			if err != nil {
				t.Fatalf("list %d, page %d: %v", try, page, err)
			}
			if page == 0 {
				rev = l.Revision
			} else if l.Revision != rev {
				t.Fatalf("list %d, page %d at revision %d, its first page at %d", try, page, l.Revision, rev)
			}
			items = append(items, l.Items...)
			if cont = l.Continue; cont == "" {
				break
			}
		}
		rounds := map[string]int{}
		for _, it := range items {
			var w v1.Workload
			if err := json.Unmarshal(it.Object, &w); err != nil {
				t.Fatal(err)
			}
			if it.Revision > rev {
				t.Fatalf("list %d at revision %d holds %s at revision %d", try, rev, w.Metadata.Name, it.Revision)
			}
			if strings.HasPrefix(w.Metadata.Name, "c") {
				var r int
				fmt.Sscan(w.Metadata.Labels["round"], &r)
				rounds[w.Metadata.Name] = r
			}
		}
		seq := make([]int, n)
		for i, name := range names {
			r, ok := rounds[name]
			if !ok {
				t.Fatalf("list %d: %s missing: %v", try, name, rounds)
			}
			seq[i] = r
		}
		if seq[0]-seq[n-1] > 1 || seq[0] < seq[n-1] || !slices.IsSortedFunc(seq, func(a, b int) int { return b - a }) {
			t.Fatalf("list %d at revision %d: rounds %v are not one moment of the writer's (g+1 then g)", try, rev, seq)
		}
		if rev != lastRev {
			changed++
			lastRev = rev
		}
	}
	if changed < 2 {
		t.Errorf("the writer changed no list in between (%d revisions seen): the test saw nothing", changed)
	}
}

// TestListSnapshotsPerTenant: a tenant's lists hold only its own
// objects, while other tenants' lists and writes share the cache, and a
// continue token of another tenant's list pages through the caller's own
// list, never the other's.
func TestListSnapshotsPerTenant(t *testing.T) {
	t.Parallel()
	e := unlimitedEnv(t)
	for i := range 5 {
		for _, tc := range []struct{ who, tenant string }{{"admin", "biology"}, {"geo-admin", "geology"}} {
			name := fmt.Sprintf("t%d", i)
			if r := e.do(tc.who, "PUT", "/v1/tenants/"+tc.tenant+"/workloads/"+name, workloadJSON(tc.tenant, name, 1)); r.status != http.StatusCreated {
				t.Fatalf("apply %s/%s: %d %s", tc.tenant, name, r.status, r.body)
			}
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	wg := listers(ctx, t, e.client("geo-admin"), "geology", 2)
	t.Cleanup(func() { stop(); wg.Wait() })
	tenantOf := func(l wire.List) []string {
		var out []string
		for _, n := range itemNames(t, l) {
			out = append(out, n[:strings.IndexByte(n, '/')])
		}
		return out
	}
	geo, err := e.client("geo-admin").ListPage(t.Context(), v1.KindWorkload, "geology", 2, "")
	if err != nil || geo.Continue == "" {
		t.Fatalf("geology's first page: %v, continue %q", err, geo.Continue)
	}
	admin := e.client("admin")
	for i := range 10 {
		if r := e.do("geo-admin", "PUT", "/v1/tenants/geology/workloads/t0", workloadJSON("geology", "t0", 1+i%2)); r.status != http.StatusOK {
			t.Fatalf("update geology: %d %s", r.status, r.body)
		}
		l, err := admin.List(t.Context(), v1.KindWorkload, "biology")
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range tenantOf(l) {
			if tn != "biology" {
				t.Fatalf("biology's list holds %s's objects: %v", tn, itemNames(t, l))
			}
		}
		// Without a tenant in the path, a tenant's list is its own too.
		all, err := admin.List(t.Context(), v1.KindWorkload, "")
		if err != nil || !slices.Equal(tenantOf(all), tenantOf(l)) {
			t.Fatalf("biology's list of every tenant: %v, %v", itemNames(t, all), err)
		}
	}
	// geology's token in biology's list: biology's objects or a refusal.
	l, err := admin.ListPage(t.Context(), v1.KindWorkload, "biology", 2, geo.Continue)
	var ce *client.Error
	switch {
	case errors.As(err, &ce) || errors.Is(err, client.ErrExpired):
	case err != nil:
		t.Fatal(err)
	default:
		for _, tn := range tenantOf(l) {
			if tn != "biology" {
				t.Fatalf("geology's continue token showed biology %s's objects: %v", tn, itemNames(t, l))
			}
		}
	}
	// The operator's list of every tenant holds both.
	ops, err := e.client("operator").List(t.Context(), v1.KindWorkload, "")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tn := range tenantOf(ops) {
		seen[tn] = true
	}
	if !seen["biology"] || !seen["geology"] {
		t.Errorf("operator's list: tenants %v", seen)
	}
}
