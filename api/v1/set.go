package v1

// Set is every object read from one or more manifest files, in input order.
type Set struct {
	Topologies []Topology
	Tenants    []Tenant
	Workloads  []Workload
	Policies   []Policy
	// Secrets are write-only through the API; rung apply sends them
	// before the workloads.
	Secrets []Secret
	// Volumes are tenants' persistent file systems (volume.go).
	Volumes []Volume
	// Origins maps "Kind/name" (Workloads: "Workload/tenant/name") to where
	// the object was read, for error messages. Decode also records a second
	// or later object of one name as "Kind/name#2", "#3"…, and the line of
	// each field as "KEY PATH", e.g. "Topology/campus spec.nodes[3].host".
	Origins map[string]Origin
}

// Origin is where a document came from.
type Origin struct {
	File string // path as given by the user
	Doc  int    // 1-based index of the document in the file
	Line int    // line of the document's first line
}
