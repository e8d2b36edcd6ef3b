package server_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

// TestNodePeers: with a Topology network, each node's replicas carry their
// node's slice, and a node learns the other live nodes' slices, underlay
// addresses and the addresses of the replicas planned there, and nothing
// a node claims beyond them.
func TestNodePeers(t *testing.T) {
	e, _, cs := nodeEnvStore(t)
	ctx := t.Context()
	set, err := v1.Decode("three.yaml", []byte(threeNodes))
	if err != nil {
		t.Fatal(err)
	}
	set.Topologies[0].Spec.Network = &v1.TopologyNetwork{Pool: "10.88.0.0/16"}
	if _, err := e.client("operator").ApplySet(ctx, set); err != nil {
		t.Fatal(err)
	}
	specs, err := cs["n1"].NodeReplicas(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) == 0 {
		t.Fatal("no replicas planned on n1")
	}
	addrs := map[string]string{"acme-evil-0": "10.88.0.99"}
	var want []wire.PeerReplica
	for i, s := range specs {
		if s.Network == nil || s.Network.Subnet != "10.88.0.0/24" {
			t.Fatalf("replica %s on n1: network %+v, want the slice 10.88.0.0/24", s.ID, s.Network)
		}
		a := fmt.Sprintf("10.88.0.%d", i+2)
		addrs[s.ID] = a
		want = append(want, wire.PeerReplica{Tenant: "acme", Workload: s.Network.Workload, Address: a})
	}
	addrs[specs[0].ID] = "10.88.7.2" // outside n1's slice: not believed
	want = want[1:]
	if err := cs["n1"].Heartbeat(ctx, "n1", wire.Heartbeat{Network: &wire.NodeNetwork{Underlay: "192.0.2.1", Addresses: addrs}}); err != nil {
		t.Fatal(err)
	}
	if err := cs["n2"].Heartbeat(ctx, "n2", wire.Heartbeat{Network: &wire.NodeNetwork{Underlay: "192.0.2.2"}}); err != nil {
		t.Fatal(err)
	}
	got, err := cs["n2"].NodePeers(ctx, "n2")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]wire.Peer{{Node: "n1", Underlay: "192.0.2.1", Subnet: "10.88.0.0/24", Replicas: want}}, got); diff != "" {
		t.Errorf("n2's peers (-want +got):\n%s", diff)
	}
	got, err = cs["n1"].NodePeers(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]wire.Peer{{Node: "n2", Underlay: "192.0.2.2", Subnet: "10.88.1.0/24"}}, got); diff != "" {
		t.Errorf("n1's peers (-want +got):\n%s", diff)
	}
	var ce *client.Error
	if _, err := cs["n1"].NodePeers(ctx, "n2"); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Errorf("n1 reads n2's peers: %v, want 403", err)
	}
}
