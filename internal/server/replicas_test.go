package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

// TestReplicaStatus: what a node reports about its replicas (a replica
// that can't start, one that runs) is what the API, the watch and
// /metrics show, per tenant; nothing a node says about a replica not
// placed on it counts.
func TestReplicaStatus(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx := t.Context()
	op := cs["operator"]
	all, err := op.Replicas(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 {
		t.Fatalf("replicas = %d, want the 6 placed by threeNodes", len(all))
	}
	for _, r := range all {
		if r.State != wire.ReplicaPending || r.Ready || !strings.Contains(r.Reason, "not reported") {
			t.Errorf("before any report: %+v, want pending, not ready", r)
		}
	}
	// The node of acme/db's replica 0 reports it failing, and the replica
	// of another node as running (ignored: not placed there).
	var db0, other wire.Replica
	for _, r := range all {
		if r.Workload == "acme/db" && r.Index == 0 {
			db0 = r
		}
	}
	for _, r := range all {
		if r.Node != db0.Node {
			other = r
		}
	}
	code := 127
	hb := wire.Heartbeat{Runtimes: []string{"container"}, Replicas: []wire.ReplicaState{
		{ID: db0.ID, Tenant: "acme", Tier: db0.Tier, Status: "missing", ReplicaStatus: wire.ReplicaStatus{
			State: wire.ReplicaRestarting, Restarts: 4, ExitCode: &code, LastError: "executable /bin/srv not found in image\x1b[31m", Health: "bogus"}},
		{ID: other.ID, Tenant: "acme", Tier: other.Tier, Status: "running", ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaRunning, Health: wire.HealthHealthy}},
	}}
	if err := cs[db0.Node].Heartbeat(ctx, db0.Node, hb); err != nil {
		t.Fatal(err)
	}
	got, err := cs["admin"].Replicas(ctx, "acme", "db")
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, r := range got {
		if r.Workload != "acme/db" {
			t.Errorf("workload list holds %s", r.Workload)
		}
		if r.ID == db0.ID {
			seen = true
			if r.State != wire.ReplicaRestarting || r.Restarts != 4 || r.Ready || r.ExitCode == nil || *r.ExitCode != 127 ||
				r.LastError != "executable /bin/srv not found in image [31m" || r.Health != wire.HealthNone || r.NodeState != wire.NodeUp {
				t.Errorf("failing replica shows %+v", r)
			}
		}
	}
	if !seen {
		t.Fatalf("%s missing from %+v", db0.ID, got)
	}
	for _, r := range mustReplicas(t, op) {
		if r.ID == other.ID && r.State != wire.ReplicaPending {
			t.Errorf("a node's report about a replica placed on %s counted: %+v", other.Node, r)
		}
	}

	// The metrics say the same.
	metrics := string(getMetrics(t, op))
	for _, want := range []string{
		`rung_replica_state{replica="0",state="restarting",tenant="acme",workload="db"} 1`,
		`rung_replica_restarts_total{replica="0",tenant="acme",workload="db"} 4`,
		`rung_replica_ready{replica="0",tenant="acme",workload="db"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A watch sees every replica, then the change when the node reports
	// the replica running.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	events := make(chan wire.Replica, 100)
	go func() {
		_ = cs["admin"].WatchReplicas(wctx, "acme", "", func(ev wire.WatchEvent, r wire.Replica) error {
			if ev.Type == wire.WatchModified {
				events <- r
			}
			return nil
		})
	}()
	time.Sleep(700 * time.Millisecond) // the watch's first listing
	hb.Replicas = []wire.ReplicaState{{ID: db0.ID, Tenant: "acme", Tier: db0.Tier, Status: "running",
		ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaRunning, Restarts: 4, Health: wire.HealthHealthy}}}
	if err := cs[db0.Node].Heartbeat(ctx, db0.Node, hb); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-events:
		if r.ID != db0.ID || r.State != wire.ReplicaRunning || !r.Ready {
			t.Errorf("watched change = %+v", r)
		}
	case <-wctx.Done():
		t.Fatal("the watch saw no change")
	}

	// Another tenant's workload is a 404 to a tenant, like the workload.
	if _, err := cs["admin"].Replicas(ctx, "other", "db"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("another tenant's replicas: %v, want not found", err)
	}
}

func mustReplicas(t *testing.T, c *client.Client) []wire.Replica {
	t.Helper()
	rs, err := c.Replicas(t.Context(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func getMetrics(t *testing.T, c *client.Client) []byte {
	t.Helper()
	b, err := c.Metrics(t.Context()) // operators only
	if err != nil {
		t.Fatal(err)
	}
	return b
}
