package tenancy

// Place is where a replica runs, as far as isolation is concerned.
type Place struct {
	Node string
	Host string // physical host; equal to Node for a physical node
}

// IsVMNode reports whether the place is a VM node rather than the host's kernel.
func (p Place) IsVMNode() bool { return p.Node != p.Host }

// Boundary is the isolation that placement alone puts between a and b:
// different physical hosts give Host; a on a VM node and b on another node of
// the same host give VM; otherwise (same node, or a directly on the host's
// kernel, which reaches every VM on it) nothing extra.
func Boundary(a, b Place) Tier {
	switch {
	case a.Host != b.Host:
		return Host
	case a.Node != b.Node && a.IsVMNode():
		return VM
	default:
		return None
	}
}

// Effective is effective(a→b): the stronger of a's own tier and the
// placement boundary.
func Effective(tierA Tier, a, b Place) Tier {
	return Max(tierA, Boundary(a, b))
}
