package agent

import "context"

// FenceOnce runs one check of the lease (tests).
func (r *Remote) FenceOnce(ctx context.Context) int { return r.fenceOnce(ctx) }
