package replica

import (
	"context"

	"rung.dev/rung/internal/tenancy"
)

// EmulatedTiers names the tiers this node runs only by emulation: vm under
// TCG, which the operator allowed for tests (--allow-emulated-vm). Node
// status, rung verify and the dashboard show them: no security boundary.
func (n *Node) EmulatedTiers(ctx context.Context) []string {
	if n.vm.Emulated(ctx) {
		return []string{tenancy.VM.String()}
	}
	return nil
}
