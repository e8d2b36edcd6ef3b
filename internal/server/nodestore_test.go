package server_test

import (
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store/bolt"
)

// TestNodesSurviveRestart: registrations and the agents' status are in the
// store, so after a control-plane restart a registered node that stays
// silent goes down after the timeout, while one that heartbeats again is
// up, and a restart alone downs nobody.
func TestNodesSurviveRestart(t *testing.T) {
	st, err := bolt.Open(t.TempDir(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{t: time.Unix(2_000_000, 0)}
	start := func() (*server.Server, string) {
		srv, err := server.New(server.Config{Store: st, Audit: audit.New(st), Now: clk.now, NodeTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		return srv, hs.URL
	}
	ctx := t.Context()
	srv, url := start()
	op, _, err := srv.IssueToken(ctx, auth.Principal{}, auth.Principal{Role: auth.Operator}, "test")
	if err != nil {
		t.Fatal(err)
	}
	opc, _ := client.New(url, op)
	nodes := map[string]*client.Client{}
	tokens := map[string]string{}
	runtimes := map[string][]string{"n1": {"container", "sandbox"}, "n2": {}, "n3": nil}
	for _, n := range []string{"n1", "n2", "n3"} {
		tok, err := opc.CreateNodeToken(ctx, n, "")
		if err != nil {
			t.Fatal(err)
		}
		tokens[n] = tok.Token
		nodes[n], _ = client.New(url, tok.Token)
		if err := nodes[n].Heartbeat(ctx, n, wire.Heartbeat{Runtimes: runtimes[n], Replicas: []wire.ReplicaState{{ID: n + "-r", Tenant: "acme", Tier: "container", Status: "running"}}}); err != nil {
			t.Fatal(err)
		}
	}

	// Restart: a new server on the same store, at the same moment.
	clk.add(5 * time.Second) // the control plane was down for a while
	_, url = start()
	opc, _ = client.New(url, op)
	ns, err := opc.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range ns.Nodes {
		got[n.Name] = n.State
		if len(n.Replicas) != 1 {
			t.Errorf("%s's stored replicas lost: %+v", n.Name, n)
		}
		// [] (can run nothing) and null (not reported) survive apart.
		if want := runtimes[n.Name]; !slices.Equal(n.Runtimes, want) || (n.Runtimes == nil) != (want == nil) {
			t.Errorf("%s's stored runtimes %#v, want %#v", n.Name, n.Runtimes, want)
		}
	}
	if diff := cmp.Diff(map[string]string{"n1": wire.NodeUp, "n2": wire.NodeUp, "n3": wire.NodeUp}, got); diff != "" {
		t.Errorf("right after the restart (-want +got):\n%s", diff)
	}
	// n1 comes back; n2 doesn't.
	for n, tok := range tokens {
		nodes[n], _ = client.New(url, tok)
	}
	clk.add(600 * time.Millisecond)
	if err := nodes["n1"].Heartbeat(ctx, "n1", wire.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	clk.add(600 * time.Millisecond)
	if diff := cmp.Diff(map[string]string{"n1": wire.NodeUp, "n2": wire.NodeDown, "n3": wire.NodeDown}, states(t, opc)); diff != "" {
		t.Errorf("a timeout after the restart (-want +got):\n%s", diff)
	}
}
