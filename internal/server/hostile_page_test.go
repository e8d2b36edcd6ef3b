package server_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
)

// forgeContinue builds a continue token as the server encodes them
// (base64url of {"a": after, "r": rev}): what a tenant who read the
// source would forge.
func forgeContinue(after string, rev int64) string {
	data, _ := json.Marshal(map[string]any{"a": after, "r": rev})
	return base64.RawURLEncoding.EncodeToString(data)
}

// TestContinueTokensCannotCrossTenants: a continue token names a key
// within the list the request's path (and the caller's role) picks, so a
// forged one cannot page into another tenant's objects: every forged
// token gets a page of the caller's own objects, a 400 or a 410, and
// never a name of the other tenant. Geology's own pages work, and so do
// the operator's pages across tenants.
func TestContinueTokensCannotCrossTenants(t *testing.T) {
	t.Parallel()
	// Hundreds of requests with one token: no rate limit in the way.
	e := newEnvWith(t, func(c *server.Config) {
		c.Limits = server.Limits{TokenRate: 1e6, TokenBurst: 1e6}
	}).seed()
	ctx := t.Context()
	// Names only biology has, so a leak is visible in a page's body.
	secretNames := []string{"zz-bio-secret-1", "zz-bio-secret-2", "aa-bio-secret-3"}
	for _, n := range secretNames {
		if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/"+n, workloadJSON("biology", n, 1)); r.status != http.StatusCreated {
			t.Fatalf("apply %s: %d %s", n, r.status, r.body)
		}
		if r := e.do("admin", "PUT", "/v1/tenants/biology/volumes/"+n, volumeYAML("biology", n, "1Gi")); r.status != http.StatusCreated {
			t.Fatalf("apply volume %s: %d %s", n, r.status, r.body)
		}
	}
	for _, n := range []string{"g1", "g2", "g3"} {
		if r := e.do("geo-admin", "PUT", "/v1/tenants/geology/workloads/"+n, workloadJSON("geology", n, 1)); r.status != http.StatusCreated {
			t.Fatalf("apply %s: %d %s", n, r.status, r.body)
		}
	}

	// The allowed case: geology pages through its own workloads.
	all, err := e.client("geo-admin").List(ctx, v1.KindWorkload, "geology")
	if err != nil {
		t.Fatal(err)
	}
	want := itemNames(t, all)
	var got []string
	var rev int64
	for cont := ""; ; {
		l, err := e.client("geo-admin").ListPage(ctx, v1.KindWorkload, "geology", 1, cont)
		if err != nil {
			t.Fatal(err)
		}
		got, rev = append(got, itemNames(t, l)...), l.Revision
		if cont = l.Continue; cont == "" {
			break
		}
	}
	if len(want) < 5 || !slices.Equal(got, want) {
		t.Fatalf("geology's pages %v, its list %v", got, want)
	}

	// Forged tokens, as geology, on every list it can reach.
	afters := []string{"", ".", "..", "biology", "zz-bio-secret-1", "aa", "a\x00", "\xff\xfe",
		"../biology/zz-bio-secret-1", "biology/zz-bio-secret-1", "/workloads/biology", "%2fbiology",
		"..%2fbiology", "\\..\\biology", strings.Repeat("z", 1500)}
	revs := []int64{rev, 1, 0, -1, 1 << 62, -1 << 63}
	lists := []string{
		"/v1/tenants/geology/workloads", "/v1/workloads", "/v1/volumes", "/v1/tenants/geology/volumes",
		"/v1/secrets", "/v1/replicas", "/v1/tenants", "/v1/tokens",
	}
	var raw []string
	for _, a := range afters {
		for _, r := range revs {
			raw = append(raw, forgeContinue(a, r))
		}
	}
	raw = append(raw, "", "e30", "bnVsbA", base64.RawURLEncoding.EncodeToString([]byte(`{"a":"x","r":1,"t":"biology"}`)),
		base64.RawURLEncoding.EncodeToString([]byte(`[{"a":"x","r":1}]`)), base64.StdEncoding.EncodeToString([]byte(`{"a":"zz","r":1}`)),
		strings.Repeat("A", 5000))
	statuses := map[int]int{}
	for _, list := range lists {
		for _, c := range raw {
			r := e.do("geo-admin", "GET", list+"?limit=2&continue="+url.QueryEscape(c), nil)
			statuses[r.status]++
			switch r.status {
			case http.StatusOK, http.StatusBadRequest, http.StatusGone, http.StatusForbidden:
			default:
				t.Errorf("GET %s continue %q: %d %s", list, c, r.status, r.body)
			}
			if b := string(r.body); strings.Contains(b, "bio-secret") || strings.Contains(b, `"sequencer"`) || strings.Contains(b, `"notebook"`) {
				t.Fatalf("GET %s as geology with continue %q shows biology's objects: %s", list, c, b)
			}
		}
	}
	if statuses[http.StatusOK] == 0 || statuses[http.StatusBadRequest] == 0 {
		t.Errorf("statuses %v: want both pages and refusals (else the test checks nothing)", statuses)
	}
	// Another tenant's list by path stays a 404, with any token.
	if r := e.do("geo-admin", "GET", "/v1/tenants/biology/workloads?continue="+forgeContinue("a", rev), nil); r.status != http.StatusNotFound {
		t.Errorf("biology's list as geology: %d %s", r.status, r.body)
	}

	// The operator's pages across tenants hold every workload once.
	op := e.client("operator")
	everything, err := op.List(ctx, v1.KindWorkload, "")
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for cont, i := "", 0; ; i++ {
		if i > 100 {
			t.Fatalf("operator's pages do not end: %v", got)
		}
		var l wire.List
		r := e.do("operator", "GET", "/v1/workloads?limit=2&continue="+url.QueryEscape(cont), nil)
		if r.status != http.StatusOK || json.Unmarshal(r.body, &l) != nil {
			t.Fatalf("operator's page %d: %d %s", i, r.status, r.body)
		}
		got = append(got, itemNames(t, l)...)
		if cont = l.Continue; cont == "" {
			break
		}
	}
	if w := itemNames(t, everything); len(w) < 10 || !slices.Equal(got, w) {
		t.Errorf("operator's pages across tenants %v, want %v", got, w)
	}
}
