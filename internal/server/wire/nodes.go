package wire

import (
	"time"

	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/replica"
)

// Node liveness states in NodeStatus.State.
const (
	// NodeUp: the node heartbeated within the timeout.
	NodeUp = "up"
	// NodeDown: the node heartbeated before, but not within the timeout;
	// the planner re-places its replicas.
	NodeDown = "down"
	// NodeUnknown: no heartbeat since the server started; the planner
	// counts the node as up (one machine running `rung up` alone has no
	// agents and still plans every node).
	NodeUnknown = "unknown"
)

// Heartbeat is what a node agent reports (PUT /v1/nodes/{name}/heartbeat).
type Heartbeat struct {
	// Runtimes are the tiers the node can run now (container, sandbox, vm,
	// host); the planner offers nothing else on the node. null means not
	// reported (the manifest's runtimes stand), [] that it can run nothing.
	Runtimes []string `json:"runtimes"`
	// Emulated are the tiers of Runtimes the node runs only by emulation
	// (vm under TCG, allowed by --allow-emulated-vm): for tests, never a
	// security boundary.
	Emulated []string `json:"emulated,omitempty"`
	// Replicas are the replicas the node has and their runtime state.
	Replicas []ReplicaState `json:"replicas"`
	// Logs are the tails of the replicas' log files (standard output and
	// error), at most MaxLogReplicas of them, MaxLogTail bytes each.
	Logs []ReplicaLog `json:"logs,omitempty"`
	// Decisions are the admission decisions the node made since its last
	// heartbeat (the image checks before a replica runs, and refusals of a
	// replica's final runtime spec), at most MaxDecisions, for the audit log.
	// Only decisions about the tenants, images and replicas planned on the
	// node are kept.
	Decisions []policy.Decision `json:"decisions,omitempty"`
	// Noisy are the noisy-neighbour steps the node took since its last
	// heartbeat (at most MaxNoisySteps), for the audit log; a move step
	// asks the control plane to place the replica elsewhere.
	Noisy []NoisyStep `json:"noisy,omitempty"`
	// CPUPressure is the node's CPU pressure (PSI some) over the last
	// interval, a fraction; nil where the kernel has none.
	CPUPressure *float64 `json:"cpuPressure,omitempty"`
	// Network is the node's tenant networks (network.go); nil when it
	// has none.
	Network *NodeNetwork `json:"network,omitempty"`
	// VolumeDisk is the room for volumes on the node; nil when not
	// reported (the planner then does not check the node's disk).
	VolumeDisk *VolumeDisk `json:"volumeDisk,omitempty"`
}

// VolumeDisk is the file system of a node's volume directory, in bytes.
type VolumeDisk struct {
	// Capacity and Free are the file system's (statfs).
	Capacity int64 `json:"capacity"`
	Free     int64 `json:"free"`
	// Held is what the node's volume images (sparse) allocate now: the
	// planner counts every volume bound to the node at its full size
	// against Free+Held.
	Held int64 `json:"held"`
}

// MaxDecisions bounds the admission decisions of one heartbeat (each
// policy.Decision.Bounded, so that they fit MaxBody with the logs).
const MaxDecisions = 8

// Bounds of the log tails a node reports; the server drops what exceeds them.
const (
	// MaxLogTail is how many bytes of the end of a replica's log a node sends.
	MaxLogTail = 16 << 10
	// MaxLogReplicas is how many replicas' logs one heartbeat carries.
	MaxLogReplicas = 32
)

// ReplicaLog is the end of one replica's log, as its node read it.
type ReplicaLog struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// Data is the log's last bytes, starting at a line boundary.
	Data string `json:"data"`
	// Truncated: the log holds more than Data.
	Truncated bool `json:"truncated,omitempty"`
}

// WorkloadLogs is the answer to GET /v1/tenants/{tenant}/workloads/{name}/logs.
type WorkloadLogs struct {
	Tenant   string         `json:"tenant"`
	Workload string         `json:"workload"`
	Replicas []ReplicaLines `json:"replicas"`
}

// ReplicaLines is the end of one replica's log, split in lines.
type ReplicaLines struct {
	Replica int      `json:"replica"`
	Node    string   `json:"node"`
	Lines   []string `json:"lines"`
	// Truncated: the replica logged more than the node reported.
	Truncated bool `json:"truncated,omitempty"`
}

// ReplicaState is one replica on a node as its agent sees it.
type ReplicaState struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	Tier   string `json:"tier"`
	// Status is the runtime's state (running, stopped, created), or
	// "missing" when the replica has a record but no container.
	Status string `json:"status"`
	// The agent's view of the replica's life (state, restarts, last
	// error, health, usage); also reported for replicas that failed to
	// start and so have no record.
	ReplicaStatus
}

// NodeStatus is one node as the control plane sees it.
type NodeStatus struct {
	Name  string `json:"name"`
	State string `json:"state"` // NodeUp, NodeDown or NodeUnknown
	// LastHeartbeat is zero for a node that never sent one.
	LastHeartbeat time.Time `json:"lastHeartbeat,omitzero"`
	// InTopology is false for an agent whose node no Topology lists.
	InTopology bool `json:"inTopology"`
	// Runtimes are what the node's agent last reported: null when it
	// reported none, [] when it can run nothing.
	Runtimes []string       `json:"runtimes"`
	Replicas []ReplicaState `json:"replicas,omitempty"`
	// Emulated are the runtimes the node emulates (no security boundary).
	Emulated []string `json:"emulated,omitempty"`
	// Agent says who runs the node's replicas: AgentRemote (a rung agent
	// that heartbeats), AgentLocal (rung up's own agent, on the control
	// plane's machine) or "" (no agent so far).
	Agent string `json:"agent,omitempty"`
	// Capacity is the node's capacity as its Topology gives it.
	Capacity *Capacity `json:"capacity,omitempty"`
	// VolumeDisk is the room for volumes its agent last reported.
	VolumeDisk *VolumeDisk `json:"volumeDisk,omitempty"`
}

// Who runs a node's replicas (NodeStatus.Agent).
const (
	AgentRemote = "remote"
	AgentLocal  = "rung up"
)

// Capacity is a node's capacity, in manifest units.
type Capacity struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	PIDs   int64  `json:"pids,omitempty"`
}

// Nodes is the answer to GET /v1/nodes.
type Nodes struct {
	Nodes []NodeStatus `json:"nodes"`
	// Timeout is how long a node may stay silent before it is down.
	Timeout string `json:"timeout"`
	// Continue, when set, asks for the next page (?continue=).
	Continue string `json:"continue,omitempty"`
}

// NodeReplicas is the answer to GET /v1/nodes/{name}/replicas: the
// replicas the node must run under the current plan.
type NodeReplicas struct {
	Node     string         `json:"node"`
	Replicas []replica.Spec `json:"replicas"`
}

// TunnelProtocol is the Upgrade token of a node agent's tunnel
// (GET /v1/nodes/{name}/tunnel), which then carries a yamux session.
const TunnelProtocol = "rung-tunnel/1"
