package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/server/wire"
)

// target is one object of the access matrix.
type target struct {
	item, list string
	body       func(e *env) []byte // the body of an apply
}

func stored(path string) func(e *env) []byte {
	return func(e *env) []byte { return e.get(path) }
}

func literal(b []byte) func(*env) []byte { return func(*env) []byte { return b } }

var targets = map[string]target{
	"own-workload":         {"/v1/tenants/biology/workloads/notebook", "/v1/tenants/biology/workloads", stored("/v1/tenants/biology/workloads/notebook")},
	"own-missing-workload": {"/v1/tenants/biology/workloads/ghost", "/v1/tenants/biology/workloads", literal(workloadJSON("biology", "ghost", 1))},
	"other-workload":       {"/v1/tenants/geology/workloads/rocks", "/v1/tenants/geology/workloads", stored("/v1/tenants/geology/workloads/rocks")},
	"other-missing-wl":     {"/v1/tenants/geology/workloads/ghost", "/v1/tenants/geology/workloads", literal(workloadJSON("geology", "ghost", 1))},
	"no-tenant-workload":   {"/v1/tenants/nosuch/workloads/ghost", "/v1/tenants/nosuch/workloads", literal(workloadJSON("nosuch", "ghost", 1))},
	"own-tenant":           {"/v1/tenants/biology", "/v1/tenants", stored("/v1/tenants/biology")},
	"other-tenant":         {"/v1/tenants/geology", "/v1/tenants", stored("/v1/tenants/geology")},
	"missing-tenant":       {"/v1/tenants/nosuch", "/v1/tenants", literal([]byte(`{"apiVersion":"rung.dev/v1","kind":"Tenant","metadata":{"name":"nosuch"},"spec":{}}`))},
	"topology":             {"/v1/topologies/campus", "/v1/topologies", stored("/v1/topologies/campus")},
	"policy":               {"/v1/policies/site", "/v1/policies", stored("/v1/policies/site")},
}

// want is the status of get, list, apply and delete.
type want [4]int

var verbs = [4]string{"get", "list", "apply", "delete"}

const (
	ok   = http.StatusOK
	made = http.StatusCreated
	no   = http.StatusNotFound
	deny = http.StatusForbidden
	busy = http.StatusConflict
)

var hidden = want{no, no, no, no}

var matrix = map[string]map[string]want{
	"operator": {
		"own-workload":         {ok, ok, ok, ok},
		"own-missing-workload": {no, ok, made, no},
		"other-workload":       {ok, ok, ok, ok},
		"other-missing-wl":     {no, ok, made, no},
		"no-tenant-workload":   hidden,
		"own-tenant":           {ok, ok, ok, busy}, // it still has workloads
		"other-tenant":         {ok, ok, ok, busy},
		"missing-tenant":       {no, ok, made, no},
		"topology":             {ok, ok, ok, ok},
		"policy":               {ok, ok, ok, ok},
	},
	"admin": {
		"own-workload":         {ok, ok, ok, ok},
		"own-missing-workload": {no, ok, made, no},
		"other-workload":       hidden,
		"other-missing-wl":     hidden,
		"no-tenant-workload":   hidden,
		"own-tenant":           {ok, ok, deny, deny},
		"other-tenant":         {no, ok, no, no}, // the list is filtered
		"missing-tenant":       {no, ok, no, no},
		"topology":             {deny, deny, deny, deny},
		"policy":               {deny, deny, deny, deny},
	},
	"viewer": {
		"own-workload":         {ok, ok, deny, deny},
		"own-missing-workload": {no, ok, deny, deny},
		"other-workload":       hidden,
		"other-missing-wl":     hidden,
		"no-tenant-workload":   hidden,
		"own-tenant":           {ok, ok, deny, deny},
		"other-tenant":         {no, ok, no, no},
		"missing-tenant":       {no, ok, no, no},
		"topology":             {deny, deny, deny, deny},
		"policy":               {deny, deny, deny, deny},
	},
}

// TestAccessMatrix checks every role × verb × object (own, other
// tenant's, missing; every kind) against a real server, each case on a
// fresh store, and that every denial is in the audit log.
func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	for role, row := range matrix {
		for name, w := range row {
			tg := targets[name]
			for i, verb := range verbs {
				t.Run(fmt.Sprintf("%s/%s/%s", role, verb, name), func(t *testing.T) {
					t.Parallel()
					e := newEnv(t).seed()
					var r response
					switch verb {
					case "get":
						r = e.do(role, "GET", tg.item, nil)
					case "list":
						r = e.do(role, "GET", tg.list, nil)
					case "apply":
						r = e.do(role, "PUT", tg.item, tg.body(e))
					case "delete":
						r = e.do(role, "DELETE", tg.item, nil)
					}
					if r.status != w[i] {
						t.Fatalf("%s %s as %s: got %d %s, want %d", verb, tg.item, role, r.status, r.body, w[i])
					}
					if r.status >= 400 {
						we := r.error(t)
						if we.Code == "" || we.Message == "" {
							t.Errorf("error body without code or message: %s", r.body)
						}
						if r.status == deny || r.status == no && role != "operator" && !strings.Contains(name, "own") {
							if a := e.lastAudit(); a.Decision != audit.Deny {
								t.Errorf("denial not audited: last entry %+v", a)
							}
						}
					}
					if verb == "list" && r.status == ok && role != "operator" {
						var l wire.List
						if err := json.Unmarshal(r.body, &l); err != nil {
							t.Fatal(err)
						}
						for _, it := range l.Items {
							if !strings.Contains(string(it.Object), `"biology"`) {
								t.Errorf("%s sees another tenant's object in %s: %s", role, tg.list, it.Object)
							}
						}
					}
				})
			}
		}
	}
}

// TestNoInference: for a tenant role, another tenant's object and a
// missing one get byte-for-byte the same answer (but for the request
// ID), for every verb, before and after the object exists.
func TestNoInference(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	paths := []struct{ method, path string }{
		{"GET", "/v1/tenants/geology/workloads/rocks"},
		{"GET", "/v1/tenants/geology/workloads"},
		{"PUT", "/v1/tenants/geology/workloads/rocks"},
		{"DELETE", "/v1/tenants/geology/workloads/rocks"},
		{"GET", "/v1/tenants/geology"},
		{"PUT", "/v1/tenants/geology"},
		{"DELETE", "/v1/tenants/geology"},
	}
	answer := func(who, method, path string) string {
		var body []byte
		if method == "PUT" {
			body = workloadJSON("geology", "rocks", 1)
			if !strings.Contains(path, "workloads") {
				body = []byte(`{"apiVersion":"rung.dev/v1","kind":"Tenant","metadata":{"name":"geology"}}`)
			}
		}
		r := e.do(who, method, path, body)
		we := r.error(t)
		we.RequestID = ""
		b, _ := json.Marshal(we)
		return fmt.Sprintf("%d %s %s", r.status, r.header.Get("Content-Type"), b)
	}
	var before []string
	for _, who := range []string{"admin", "viewer"} {
		for _, p := range paths {
			before = append(before, answer(who, p.method, p.path))
		}
	}
	// Remove geology entirely; the answers must not change.
	op := e.client("operator")
	for _, w := range []string{"rocks", "maps"} {
		if r := e.do("operator", "DELETE", "/v1/tenants/geology/workloads/"+w, nil); r.status != ok {
			t.Fatalf("delete %s: %d %s", w, r.status, r.body)
		}
	}
	_ = op
	if r := e.do("operator", "DELETE", "/v1/tenants/geology", nil); r.status != ok {
		t.Fatalf("delete tenant: %d %s", r.status, r.body)
	}
	var after []string
	for _, who := range []string{"admin", "viewer"} {
		for _, p := range paths {
			after = append(after, answer(who, p.method, p.path))
		}
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("answer reveals existence:\n exists: %s\n absent: %s", before[i], after[i])
		}
		if !strings.HasPrefix(before[i], "404 ") {
			t.Errorf("want 404, got %s", before[i])
		}
	}
}

// TestListsAreFiltered: tenant roles list only their own objects.
func TestListsAreFiltered(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	names := func(who, path string) []string {
		r := e.do(who, "GET", path, nil)
		if r.status != ok {
			t.Fatalf("GET %s as %s: %d %s", path, who, r.status, r.body)
		}
		var l wire.List
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range l.Items {
			var o struct {
				Metadata struct{ Name, Tenant string }
			}
			json.Unmarshal(it.Object, &o)
			out = append(out, strings.TrimPrefix(o.Metadata.Tenant+"/"+o.Metadata.Name, "/"))
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		who, path string
		want      []string
	}{
		{"operator", "/v1/workloads", []string{"biology/notebook", "biology/sequencer", "geology/maps", "geology/rocks"}},
		{"admin", "/v1/workloads", []string{"biology/notebook", "biology/sequencer"}},
		{"viewer", "/v1/workloads", []string{"biology/notebook", "biology/sequencer"}},
		{"geo-admin", "/v1/workloads", []string{"geology/maps", "geology/rocks"}},
		{"operator", "/v1/tenants", []string{"biology", "geology"}},
		{"admin", "/v1/tenants", []string{"biology"}},
		{"geo-admin", "/v1/tenants", []string{"geology"}},
	} {
		if got := names(tc.who, tc.path); !slices.Equal(got, tc.want) {
			t.Errorf("%s lists %s: got %v, want %v", tc.who, tc.path, got, tc.want)
		}
	}
}
