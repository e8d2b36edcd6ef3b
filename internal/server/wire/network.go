package wire

// NodeNetwork is what a node reports of its tenant networks in its
// heartbeat: the address other nodes route its replicas' slice through,
// and its replicas' addresses.
type NodeNetwork struct {
	// Underlay is the node's own IPv4 address, as other nodes reach it.
	Underlay string `json:"underlay"`
	// Addresses are its replicas' addresses, by replica ID.
	Addresses map[string]string `json:"addresses,omitempty"`
	// Tiers are the tiers the node attaches a tenant network to
	// (container, host; sandbox or vm once it can): the planner places no
	// other tier on a node of a Topology with a network. null: not
	// reported (container and host).
	Tiers []string `json:"tiers,omitempty"`
}

// MaxNodeAddresses bounds the addresses of one heartbeat.
const MaxNodeAddresses = 4096

// PeerReplica is a replica on another node as a node's rules need it.
type PeerReplica struct {
	Tenant   string `json:"tenant"`
	Workload string `json:"workload"`
	Address  string `json:"address"`
}

// Peer is another node with tenant networks: its slice of the pool is
// routed through its underlay address.
type Peer struct {
	Node     string        `json:"node"`
	Underlay string        `json:"underlay"`
	Subnet   string        `json:"subnet"`
	Replicas []PeerReplica `json:"replicas,omitempty"`
}

// NodePeers answers GET /v1/nodes/{name}/peers.
type NodePeers struct {
	Node  string `json:"node"`
	Peers []Peer `json:"peers"`
}

// NetworkUsage is a replica's traffic as its link counts it.
type NetworkUsage struct {
	RxBytes   uint64 `json:"rxBytes"`
	TxBytes   uint64 `json:"txBytes"`
	RxPackets uint64 `json:"rxPackets"`
	TxPackets uint64 `json:"txPackets"`
}
