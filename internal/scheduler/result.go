package scheduler

// Result is a plan: where every replica goes and at which tier, and why the
// others could not be placed. Its JSON form is the `rung plan -o json`
// contract of DESIGN §5.
type Result struct {
	Placements []Placement `json:"placements"`
	Unplaced   []Unplaced  `json:"unplaced"`
	// Problems lists invariants and spreads that can no longer be met after
	// a failure (`rung plan --down`); empty otherwise.
	Problems []string `json:"problems,omitempty"`
	// Explain holds the trace of one workload for `rung explain`.
	Explain *Explanation `json:"-"`
}

// Placement is one placed replica.
type Placement struct {
	Workload string `json:"workload"` // TENANT/NAME
	Replica  int    `json:"replica"`
	Tier     string `json:"tier"`
	Node     string `json:"node"`
	Host     string `json:"host"` // the physical host
	Reason   string `json:"reason"`
	// Template names the version of the workload the replica runs, set
	// by the control plane during a rollout (empty from the scheduler).
	Template string `json:"template,omitempty"`
}

// Unplaced is a replica that could not be placed, with every reason.
type Unplaced struct {
	Workload string   `json:"workload"`
	Replica  int      `json:"replica"`
	Reasons  []string `json:"reasons"`
}

// Explanation is the decision trace of one workload.
type Explanation struct {
	Workload string
	Replicas []ReplicaTrace
}

// ReplicaTrace is, for one replica, its outcome and every node's verdict.
type ReplicaTrace struct {
	Replica int
	Placed  bool
	Tier    string
	Node    string
	Reason  string // the rule and neighbour that set the tier, or why unplaced
	Nodes   []NodeVerdict
}

// NodeVerdict is why one node was rejected, or its cost when feasible.
type NodeVerdict struct {
	Node     string
	Rejected bool
	Filter   string // the first filter that rejected it
	Reason   string
	Tier     string // the tier it would have needed, when feasible
	Cost     float64
	Chosen   bool
}
