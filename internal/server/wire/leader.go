package wire

// Leader is who schedules among the control planes on one store
// (GET /v1/leader).
type Leader struct {
	// ID names the leader ("" while none leads).
	ID string `json:"id"`
	// Term is the store revision its leadership began at.
	Term int64 `json:"term"`
	// Answering is true when the server that answered leads.
	Answering bool `json:"answering"`
}

// LeaseHeader is the heartbeat answer's header with the lease granted to
// the node (a Go duration such as "7.5s"): a node that can't renew within
// it stops its replicas, and the control plane re-places them only after
// its node timeout, which is longer (DESIGN §11, fencing).
const LeaseHeader = "Rung-Lease"
