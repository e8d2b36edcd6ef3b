package server_test

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

// TestWorkloadLogs: a node's heartbeat carries its replicas' log tails;
// the workload's tenant reads them, another tenant gets the 404 of a
// missing workload, a node token a 403; a node cannot report logs of a
// replica the plan does not put on it.
func TestWorkloadLogs(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx := t.Context()
	res, err := cs["operator"].Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := where(res)
	n0, n1 := at["acme/web[0]"], at["acme/web[1]"]
	if n0 == "" || n1 == "" || n0 == n1 {
		t.Fatalf("web placed at %v", at)
	}
	other := ""
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != n0 {
			other = n
			break
		}
	}
	beat := func(node string, logs ...wire.ReplicaLog) {
		t.Helper()
		if err := cs[node].Heartbeat(ctx, node, wire.Heartbeat{Runtimes: []string{"container"}, Logs: logs}); err != nil {
			t.Fatalf("heartbeat %s: %v", node, err)
		}
	}
	beat(n0, wire.ReplicaLog{ID: "acme-web-0", Tenant: "acme", Data: "hello\nworld\n"},
		wire.ReplicaLog{ID: "acme-web-00", Tenant: "acme", Data: "not an ordinal\n"})
	// Another node claims web[0] (not placed there): ignored.
	beat(other, wire.ReplicaLog{ID: "acme-web-0", Tenant: "acme", Data: "forged\n"},
		wire.ReplicaLog{ID: "acme-db-0", Tenant: "acme", Data: "db\n"})

	got, err := cs["admin"].Logs(ctx, "acme", "web", -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Tenant != "acme" || got.Workload != "web" || len(got.Replicas) != 3 {
		t.Fatalf("logs %+v", got)
	}
	if diff := cmp.Diff(wire.ReplicaLines{Replica: 0, Node: n0, Lines: []string{"hello", "world"}}, got.Replicas[0]); diff != "" {
		t.Errorf("replica 0 (-want +got):\n%s", diff)
	}
	if r := got.Replicas[1]; r.Replica != 1 || r.Node != n1 || len(r.Lines) != 0 {
		t.Errorf("replica 1 reported nothing yet: %+v", r)
	}
	got, err = cs["admin"].Logs(ctx, "acme", "web", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Replicas) != 1 || !slices.Equal(got.Replicas[0].Lines, []string{"world"}) {
		t.Errorf("replica 0, tail 1: %+v", got.Replicas)
	}
	// A newer heartbeat replaces the tail; operators read every tenant.
	beat(n0, wire.ReplicaLog{ID: "acme-web-0", Tenant: "acme", Data: "again\n"})
	got, err = cs["operator"].Logs(ctx, "acme", "web", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Replicas) != 1 || !slices.Equal(got.Replicas[0].Lines, []string{"again"}) {
		t.Errorf("after a new heartbeat: %+v", got.Replicas)
	}

	// Another tenant: the very 404 of a missing workload.
	set, err := v1.Decode("globex.yaml", []byte(`
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: globex}
spec: {organization: globex, trust: trusted, quota: {cpu: 1, memory: 1Gi, replicas: 1}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs["operator"].ApplySet(ctx, set); err != nil {
		t.Fatal(err)
	}
	tok, err := cs["operator"].CreateToken(ctx, string(auth.TenantAdmin), "globex", "")
	if err != nil {
		t.Fatal(err)
	}
	globex, err := client.New(cs["operator"].Server(), tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	status := func(err error) (int, string) {
		var ce *client.Error
		if !errors.As(err, &ce) {
			t.Fatalf("want an API error, got %v", err)
		}
		return ce.Status, ce.Code
	}
	_, hidden := globex.Logs(ctx, "acme", "web", -1, 0)
	_, missing := cs["admin"].Logs(ctx, "acme", "nope", -1, 0)
	if s, c := status(hidden); s != http.StatusNotFound || c != wire.CodeNotFound {
		t.Errorf("other tenant: %d %s, want 404", s, c)
	}
	if s, _ := status(missing); s != http.StatusNotFound {
		t.Errorf("missing workload: %d, want 404", s)
	}
	if _, err := globex.Logs(ctx, "globex", "web", -1, 0); err == nil {
		t.Error("own tenant's missing workload answered")
	}
	// A node token may not read logs, not even of its own replicas.
	_, err = cs[n0].Logs(ctx, "acme", "web", -1, 0)
	if s, _ := status(err); s != http.StatusForbidden {
		t.Errorf("node token: %d, want 403", s)
	}
	// Bad queries.
	opTok, err := cs["operator"].CreateToken(ctx, string(auth.Operator), "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"tail=-1", "tail=x", "replica=-2", "tail=100000"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cs["operator"].Server()+"/v1/tenants/acme/workloads/web/logs?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+opTok.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", q, resp.StatusCode)
		}
	}
}

// TestPublishLogs: the logs of this process's own agent (`rung up
// --agent`), handed over with PublishLogs, are read like a node's.
func TestPublishLogs(t *testing.T) {
	e := newEnv(t).seed()
	ctx := t.Context()
	e.srv.PublishLogs("", []wire.ReplicaLog{
		{ID: "biology-sequencer-1", Tenant: "biology", Data: "sequencing\n"},
		{ID: "biology-sequencer-2", Tenant: "geology", Data: "wrong tenant\n"},
	})
	got, err := e.client("viewer").Logs(ctx, "biology", "sequencer", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Replicas) != 1 || got.Replicas[0].Node == "" || !slices.Equal(got.Replicas[0].Lines, []string{"sequencing"}) {
		t.Errorf("replica 1: %+v", got.Replicas)
	}
	got, err = e.client("viewer").Logs(ctx, "biology", "sequencer", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Replicas) != 1 || len(got.Replicas[0].Lines) != 0 {
		t.Errorf("replica 2 (logged under another tenant): %+v", got.Replicas)
	}
	var ce *client.Error
	if _, err := e.client("geo-admin").Logs(ctx, "biology", "sequencer", -1, 0); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
		t.Errorf("other tenant: %v, want 404", err)
	}
	// Publishing nothing forgets them.
	e.srv.PublishLogs("", nil)
	got, err = e.client("admin").Logs(ctx, "biology", "sequencer", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Replicas) != 1 || len(got.Replicas[0].Lines) != 0 {
		t.Errorf("after publishing nothing: %+v", got.Replicas)
	}
}
