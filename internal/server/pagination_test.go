package server_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

func itemNames(t *testing.T, l wire.List) []string {
	t.Helper()
	var out []string
	for _, it := range l.Items {
		var o struct {
			Metadata v1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(it.Object, &o); err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Metadata.Tenant+"/"+o.Metadata.Name)
	}
	return out
}

// TestPagination: lists come in pages of ?limit=, chained by ?continue=,
// all at the first page's revision; a change elsewhere leaves them be; a
// change to the list itself is not in the later pages of a list begun
// before it (they come from the first page's snapshot) and is in the
// next list; a continue token whose snapshot is gone is 410 if the list
// changed since (list again, which the typed client does by itself).
func TestPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	ctx := t.Context()
	admin := e.client("admin")
	for _, n := range []string{"p1", "p2", "p3", "p4", "p5"} {
		if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/"+n, workloadJSON("biology", n, 1)); r.status != http.StatusCreated {
			t.Fatalf("apply %s: %d %s", n, r.status, r.body)
		}
	}
	all, err := admin.List(ctx, v1.KindWorkload, "biology")
	if err != nil {
		t.Fatal(err)
	}
	want := itemNames(t, all)
	if len(want) < 7 {
		t.Fatalf("only %d workloads: %v", len(want), want)
	}

	var got []string
	var rev int64
	cont := ""
	for i := 0; ; i++ {
		l, err := admin.ListPage(ctx, v1.KindWorkload, "biology", 2, cont)
		if err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
		if len(l.Items) > 2 {
			t.Fatalf("page %d has %d items, limit 2", i, len(l.Items))
		}
		if i > 0 && l.Revision != rev {
			t.Errorf("page %d at revision %d, the first at %d", i, l.Revision, rev)
		}
		rev = l.Revision
		got = append(got, itemNames(t, l)...)
		if i == 0 { // another tenant's change does not disturb the list
			if r := e.do("geo-admin", "PUT", "/v1/tenants/geology/workloads/g1", workloadJSON("geology", "g1", 1)); r.status != http.StatusCreated {
				t.Fatalf("apply in geology: %d %s", r.status, r.body)
			}
		}
		if l.Continue == "" {
			break
		}
		cont = l.Continue
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages %v, want %v", got, want)
	}

	// A change to the list between pages: the next page still comes
	// from the first page's snapshot (without the change); the next list
	// sees the change.
	first, err := admin.ListPage(ctx, v1.KindWorkload, "biology", 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/p6", workloadJSON("biology", "p6", 1)); r.status != http.StatusCreated {
		t.Fatal(r.status)
	}
	second, err := admin.ListPage(ctx, v1.KindWorkload, "biology", 2, first.Continue)
	if err != nil {
		t.Fatalf("next page after the list changed: %v", err)
	}
	if second.Revision != first.Revision || !slices.Equal(itemNames(t, second), want[2:4]) {
		t.Errorf("next page after the list changed: revision %d %v, want %d %v", second.Revision, itemNames(t, second), first.Revision, want[2:4])
	}
	if l, err := admin.List(ctx, v1.KindWorkload, "biology"); err != nil || len(l.Items) != len(want)+1 {
		t.Errorf("list again: %d items, %v", len(l.Items), err)
	}
	// Once that snapshot is gone (kept 30 s), the token of a list that
	// changed since is 410, and the client lists again.
	e.srv.DropListSnapshots()
	if _, err := admin.ListPage(ctx, v1.KindWorkload, "biology", 2, second.Continue); !errors.Is(err, client.ErrExpired) {
		t.Errorf("next page of a snapshot gone, the list changed: %v, want expired (410)", err)
	}
	// ... and a list that did not change is still served from the store.
	third, err := admin.ListPage(ctx, v1.KindWorkload, "biology", 2, "")
	if err != nil {
		t.Fatal(err)
	}
	e.srv.DropListSnapshots()
	if l, err := admin.ListPage(ctx, v1.KindWorkload, "biology", 2, third.Continue); err != nil || l.Revision != third.Revision || len(l.Items) != 2 {
		t.Errorf("next page of a snapshot gone, the list unchanged: %d items at %d (want 2 at %d), %v", len(l.Items), l.Revision, third.Revision, err)
	}

	// Bad values name the parameter.
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "continue=bm9wZQ", "continue=" + url.QueryEscape("!!")} {
		r := e.do("admin", "GET", "/v1/tenants/biology/workloads?"+q, nil)
		if r.status != http.StatusBadRequest {
			t.Errorf("?%s: %d %s", q, r.status, r.body)
		}
	}

	// Tokens page too.
	var ids []string
	cont = ""
	for {
		r := e.do("operator", "GET", "/v1/tokens?limit=2&continue="+url.QueryEscape(cont), nil)
		var l wire.TokenList
		if r.status != http.StatusOK || json.Unmarshal(r.body, &l) != nil || len(l.Items) > 2 {
			t.Fatalf("tokens page: %d %s", r.status, r.body)
		}
		for _, it := range l.Items {
			ids = append(ids, it.ID)
		}
		if cont = l.Continue; cont == "" {
			break
		}
	}
	alltoks, err := e.client("operator").AllTokens(ctx)
	if err != nil || len(ids) != len(alltoks) || len(ids) < 4 || !slices.IsSorted(ids) {
		t.Errorf("token pages %v, all %d, %v", ids, len(alltoks), err)
	}
}
