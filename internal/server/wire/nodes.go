package wire

import (
	"time"

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
	// Runtimes are the tiers the node can run now (container, sandbox, vm).
	Runtimes []string `json:"runtimes"`
	// Replicas are the replicas the node has and their runtime state.
	Replicas []ReplicaState `json:"replicas"`
}

// ReplicaState is one replica on a node as its agent sees it.
type ReplicaState struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	Tier   string `json:"tier"`
	// Status is the runtime's state (running, stopped, created), or
	// "missing" when the replica has a record but no container.
	Status string `json:"status"`
}

// NodeStatus is one node as the control plane sees it.
type NodeStatus struct {
	Name  string `json:"name"`
	State string `json:"state"` // NodeUp, NodeDown or NodeUnknown
	// LastHeartbeat is zero for a node that never sent one.
	LastHeartbeat time.Time `json:"lastHeartbeat,omitzero"`
	// InTopology is false for an agent whose node no Topology lists.
	InTopology bool           `json:"inTopology"`
	Runtimes   []string       `json:"runtimes,omitempty"`
	Replicas   []ReplicaState `json:"replicas,omitempty"`
}

// Nodes is the answer to GET /v1/nodes.
type Nodes struct {
	Nodes []NodeStatus `json:"nodes"`
	// Timeout is how long a node may stay silent before it is down.
	Timeout string `json:"timeout"`
}

// NodeReplicas is the answer to GET /v1/nodes/{name}/replicas: the
// replicas the node must run under the current plan.
type NodeReplicas struct {
	Node     string         `json:"node"`
	Replicas []replica.Spec `json:"replicas"`
}
