package wire

import "time"

// VolumeDeletion is a deleted volume that nodes holding it wipe (GET
// /v1/nodes/{name}/volumedeletions): its tenant, name and uid, and the
// nodes it was bound to (its perReplica instances are NAME-ORD).
type VolumeDeletion struct {
	Tenant    string    `json:"tenant"`
	Name      string    `json:"name"`
	UID       string    `json:"uid"`
	Nodes     []string  `json:"nodes,omitempty"`
	Instances []string  `json:"instances,omitempty"`
	DeletedAt time.Time `json:"deletedAt"`
}

// VolumeDeletions is the answer of GET /v1/nodes/{name}/volumedeletions.
type VolumeDeletions struct {
	Node      string           `json:"node"`
	Deletions []VolumeDeletion `json:"deletions"`
}
