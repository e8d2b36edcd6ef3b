package wire

import (
	"encoding/json"
	"time"
)

// Replica states (DESIGN §8), as `rung get replicas`, the dashboard and
// /metrics show them.
const (
	// ReplicaPending: placed by the plan, not yet reported by its node (or
	// not placed at all: see Reason).
	ReplicaPending = "pending"
	// ReplicaAdmitted: the node accepted it and is preparing it (image,
	// admission, bundle).
	ReplicaAdmitted = "admitted"
	// ReplicaStarting: created, its health check has not passed yet.
	ReplicaStarting = "starting"
	// ReplicaRunning: running and healthy (or without a health check).
	ReplicaRunning = "running"
	// ReplicaUnhealthy: running, its health check failed Retries times.
	ReplicaUnhealthy = "unhealthy"
	// ReplicaRestarting: stopped or failed to start; waiting for its
	// back-off before the next try.
	ReplicaRestarting = "restarting"
	// ReplicaFailed: stopped for good (restart policy Never or OnFailure
	// after a failure that won't be retried) or refused (admission, a
	// missing image): see LastError.
	ReplicaFailed = "failed"
	// ReplicaSucceeded: exited 0 under restartPolicy OnFailure or Never.
	ReplicaSucceeded = "succeeded"
	// ReplicaTerminating: being stopped (removed from the plan or replaced).
	ReplicaTerminating = "terminating"
)

// ReplicaStates lists every state, in the order of a replica's life.
var ReplicaStates = []string{
	ReplicaPending, ReplicaAdmitted, ReplicaStarting, ReplicaRunning, ReplicaUnhealthy,
	ReplicaRestarting, ReplicaFailed, ReplicaSucceeded, ReplicaTerminating,
}

// Health of a replica's health check.
const (
	HealthNone      = "none"     // no health check (ready once running)
	HealthStarting  = "starting" // no verdict yet (start period, no check run)
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Usage is what a replica uses now, read from its cgroup.
type Usage struct {
	// MilliCPU is the CPU used over the last report interval, in
	// thousandths of a core.
	MilliCPU int64 `json:"milliCPU"`
	// Memory is the cgroup's memory usage in bytes.
	Memory int64 `json:"memory"`
	// PIDs is the number of tasks in the cgroup.
	PIDs int64 `json:"pids"`
	// CPUSeconds is the CPU time used since the replica started.
	CPUSeconds float64 `json:"cpuSeconds,omitempty"`
	// Throttled is the fraction of CFS periods throttled over the last
	// interval; ThrottledSeconds the time throttled since the start.
	Throttled        float64 `json:"throttled,omitempty"`
	ThrottledSeconds float64 `json:"throttledSeconds,omitempty"`
	// OOMKills counts the kernel's OOM kills in the replica's cgroup.
	OOMKills int64 `json:"oomKills,omitempty"`
	// ReadBytes and WriteBytes are its block I/O since the start.
	ReadBytes  int64 `json:"readBytes,omitempty"`
	WriteBytes int64 `json:"writeBytes,omitempty"`
	// Pressure is its cgroup's CPU pressure over the last interval (a
	// fraction; cgroup v2 only: on v1 see the node's).
	Pressure *float64 `json:"pressure,omitempty"`
}

// NoisyStep is one step of the noisy-neighbour ladder on one replica
// (DESIGN §12), with the figures that triggered it.
type NoisyStep struct {
	At      time.Time `json:"at"`
	Replica string    `json:"replica"`
	Tenant  string    `json:"tenant"`
	// Action is throttle, report, move or release.
	Action string `json:"action"`
	Reason string `json:"reason"`
	// UsedMilliCPU and RequestMilliCPU are the replica's CPU; Victim the
	// starved neighbour ("node": the node's pressure, cgroup v1), Starved
	// its pressure or throttling, Threshold the policy's (fractions).
	UsedMilliCPU    int64   `json:"usedMilliCPU"`
	RequestMilliCPU int64   `json:"requestMilliCPU"`
	Victim          string  `json:"victim,omitempty"`
	Starved         float64 `json:"starved"`
	Threshold       float64 `json:"threshold"`
	// Error says why the node could not apply it.
	Error string `json:"error,omitempty"`
}

// MaxNoisySteps bounds the steps a replica status or a heartbeat carries.
const MaxNoisySteps = 16

// ReplicaStatus is what a node reports about one replica it runs, beyond
// its runtime state: the agent's view of its life.
type ReplicaStatus struct {
	State     string    `json:"state"`
	Restarts  int       `json:"restarts"`
	ExitCode  *int      `json:"exitCode,omitempty"`
	LastError string    `json:"lastError,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	// FinishedAt is when its process last exited.
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	Health     string    `json:"health"`
	// Usage is nil when the node could not read it.
	Usage *Usage `json:"usage,omitempty"`
	// Throttled is true while the noisy-neighbour ladder holds the
	// replica at its request; Noisy are its last ladder steps, oldest
	// first (at most MaxNoisySteps).
	Throttled bool        `json:"throttled,omitempty"`
	Noisy     []NoisyStep `json:"noisy,omitempty"`
	// Address is the replica's address on its tenant network; Network its
	// traffic (DESIGN §9); both empty without a network.
	Address string        `json:"address,omitempty"`
	Network *NetworkUsage `json:"network,omitempty"`
	// Hash identifies the spec this status is about (agent.Hash).
	Hash string `json:"hash,omitempty"`
	// Template is the version of the workload the replica runs, so the
	// control plane can tell a rollout's old replicas from its new ones.
	Template string `json:"template,omitempty"`
}

// Replica is one replica as the API shows it (GET /v1/replicas,
// /v1/tenants/{tenant}/replicas, .../workloads/{name}/replicas): where the
// plan put it and what its node reports.
type Replica struct {
	// Workload is TENANT/NAME; Index its replica number; ID the replica's
	// name on its node.
	Workload string `json:"workload"`
	Tenant   string `json:"tenant"`
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Node     string `json:"node,omitempty"`
	Host     string `json:"host,omitempty"`
	Tier     string `json:"tier,omitempty"`
	// Ready is true for a running replica whose health check passes (or
	// that has none): the replicas a rollout counts.
	Ready bool `json:"ready"`
	ReplicaStatus
	// Reason says why the replica is pending: the planner's reasons for an
	// unplaced one, or that its node has not reported it yet.
	Reason string `json:"reason,omitempty"`
	// NodeState is the liveness of its node (up, down, unknown).
	NodeState string `json:"nodeState,omitempty"`
	// Published are its published ports as "NODEPORT/PROTO->PORT": the
	// node port answers on its node's addresses (DESIGN §9). The control
	// plane computes them from the manifests; nodes don't report them.
	Published []string `json:"published,omitempty"`
}

// Replicas is the answer to a list of replicas.
type Replicas struct {
	Items []Replica `json:"items"`
	// Continue, when set, asks for the next page (?continue=).
	Continue string `json:"continue,omitempty"`
}

// Watch event types, as Kubernetes names them.
const (
	WatchAdded    = "ADDED"
	WatchModified = "MODIFIED"
	WatchDeleted  = "DELETED"
)

// WatchEvent is one line of a ?watch=1 stream: Object is what the list
// holds (a Replica, or a manifest).
type WatchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// Exec streams (GET .../workloads/{name}/replicas/{index}/exec, upgraded to
// a WebSocket with subprotocol ExecProtocol). Every binary message starts
// with a channel byte, as Kubernetes' v5.channel.k8s.io: the client sends
// ExecStdin data and ExecClose+[ExecStdin] when its input ends; the server
// sends ExecStdout and ExecStderr data, then one ExecStatus message (JSON
// ExecStatus) and closes.
const (
	ExecProtocol = "exec.rung.dev/v1"
	ExecStdin    = 0
	ExecStdout   = 1
	ExecStderr   = 2
	ExecStatus   = 3
	// ExecResize carries a TermSize (JSON) when the client's terminal
	// changes size.
	ExecResize = 4
	ExecClose  = 255
)

// TermSize is a terminal's size, as Kubernetes' resize channel sends it.
type TermSize struct {
	Width  uint16 `json:"Width"`
	Height uint16 `json:"Height"`
}

// ExecResult is the last message of an exec stream.
type ExecResult struct {
	// ExitCode of the command; 127 when it does not exist in the replica.
	ExitCode int `json:"exitCode"`
	// Error says why the command could not run (then ExitCode is -1, or 127).
	Error string `json:"error,omitempty"`
}

// Rollout is the answer to GET .../workloads/{name}/rollout: where a
// workload's move to its current version stands, and its earlier versions.
type Rollout struct {
	Workload string `json:"workload"`
	// Template names the current version; Replicas is spec.replicas.
	Template string `json:"template"`
	Replicas int    `json:"replicas"`
	// Updated are the replicas running the current version, Ready those
	// of them ready; Old the replicas still on an older version; Surge the
	// extra replicas of the rollout.
	Updated int `json:"updated"`
	Ready   int `json:"ready"`
	Old     int `json:"old"`
	Surge   int `json:"surge"`
	// Done: every replica runs the current version and is ready.
	Done    bool      `json:"done"`
	Started time.Time `json:"started,omitzero"`
	Blocked string    `json:"blocked,omitempty"`
	// History are the earlier versions, oldest first.
	History []Revision `json:"history"`
}

// Revision is one earlier version of a workload.
type Revision struct {
	Template string    `json:"template"`
	At       time.Time `json:"at"`
	// Spec is that version's spec, for `rung rollout undo`.
	Spec json.RawMessage `json:"spec"`
}
