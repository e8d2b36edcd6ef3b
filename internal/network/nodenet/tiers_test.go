package nodenet_test

import (
	"errors"
	"os"
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
	want := tenancy.Set(0).With(tenancy.Container).With(tenancy.Host)
	// The vm tier's tap devices (tap.go) need /dev/net/tun.
	if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err == nil {
		f.Close()
		want = want.With(tenancy.VM)
	} else {
		t.Logf("no tap devices here (%v): vm not reported", err)
	}
	if got := n.Tiers(); got != want {
		t.Errorf("Tiers = %s, want %s", got, want)
	}
	if got := n.Tiers() &^ tenancy.Set(0).With(tenancy.VM); got != topology.DefaultNetworkTiers {
		t.Errorf("Tiers = %s, the planner's default %s", got, topology.DefaultNetworkTiers)
	}
	if err := n.Attach(t.Context(), sandboxAttachment()); !errors.Is(err, nodenet.ErrUnsupported) {
		t.Errorf("Attach of a sandbox replica: %v, want ErrUnsupported", err)
	}
}

func sandboxAttachment() *replica.Attachment {
	return &replica.Attachment{Spec: replica.Spec{ID: "sb", Tenant: "acme", Tier: tenancy.Sandbox, Network: &network.Spec{Pool: "10.9.0.0/16", Subnet: "10.9.1.0/24"}}}
}
