package v1

// Set is every object read from one or more manifest files, in input order.
type Set struct {
	Topologies []Topology
	Tenants    []Tenant
	Workloads  []Workload
	Policies   []Policy
	// Origins maps "Kind/name" (Workloads: "Workload/tenant/name") to where
	// the object was read, for error messages.
	Origins map[string]Origin
}

// Origin is where a document came from.
type Origin struct {
	File string // path as given by the user
	Doc  int    // 1-based index of the document in the file
	Line int    // line of the document's first line
}
