package nodenet_test

import (
	"errors"
	"testing"

	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// TestTiers: what a node reports to the planner is what it attaches (and
// the planner's default for a node that has not said).
func TestTiers(t *testing.T) {
	var n nodenet.Net
	if got, want := n.Tiers(), tenancy.Set(0).With(tenancy.Container).With(tenancy.Host); got != want {
		t.Errorf("Tiers = %s, want %s", got, want)
	}
	if got := n.Tiers(); got != topology.DefaultNetworkTiers {
		t.Errorf("Tiers = %s, the planner's default %s", got, topology.DefaultNetworkTiers)
	}
	if err := n.Attach(t.Context(), sandboxAttachment()); !errors.Is(err, nodenet.ErrUnsupported) {
		t.Errorf("Attach of a sandbox replica: %v, want ErrUnsupported", err)
	}
}

func sandboxAttachment() *replica.Attachment {
	return &replica.Attachment{Spec: replica.Spec{ID: "sb", Tenant: "acme", Tier: tenancy.Sandbox, Network: &network.Spec{Pool: "10.9.0.0/16", Subnet: "10.9.1.0/24"}}}
}
