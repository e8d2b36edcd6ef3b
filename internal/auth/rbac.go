package auth

import v1 "rung.dev/rung/api/v1"

// Verb is what a request does to an object.
type Verb string

// Verbs.
const (
	Get    Verb = "get"
	List   Verb = "list"
	Apply  Verb = "apply" // create or update
	Delete Verb = "delete"
	// Exec runs a command inside a workload's replica (`rung exec`):
	// tenant admins of the tenant and operators.
	Exec Verb = "exec"
)

// Kinds that are not manifest kinds but are still guarded.
const (
	// KindToken is an API token.
	KindToken = "Token"
	// KindPlan is the placement view (read-only; filtered per tenant).
	KindPlan = "Plan"
	// KindEvent is the event stream (read-only; filtered per tenant).
	KindEvent = "Event"
	// KindSecretKey is the key secrets are sealed with (operators rotate it).
	KindSecretKey = "SecretKey"
	// KindMetrics is the Prometheus metrics (operators only).
	KindMetrics = "Metrics"
	// KindNode is a node's liveness and desired replicas (Object.Node names
	// it; empty for the list of every node).
	KindNode = "Node"
)

// Object is what a request acts on, as far as access control cares: its
// kind and the tenant that owns it. For a Tenant, Tenant is its own name;
// for cluster-wide kinds it is empty. A List across every tenant leaves
// Tenant empty and filters the answer with Principal.Sees.
type Object struct {
	Kind   string
	Tenant string
	// Node is the node a KindNode object is about.
	Node string
}

// Decision is the answer to one access question.
type Decision int

// Decisions.
const (
	// Allow: go ahead.
	Allow Decision = iota
	// Forbid: the principal may know the object exists but may not do
	// this (HTTP 403).
	Forbid
	// Hide: the object belongs to a tenant the principal may not know
	// about; answer exactly as if it did not exist (HTTP 404).
	Hide
)

func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case Forbid:
		return "forbid"
	case Hide:
		return "hide"
	}
	return "unknown"
}

// Decide answers whether p may do v to o. The decision depends only on p,
// v and o, never on what is stored, so a denial cannot reveal whether an
// object of another tenant exists.
//
// Secrets are decided as Workloads are (their values are never read
// through the API, only their keys and digests).
//
//	role           Workload (own)    Tenant (own)   other tenant's   Topology, Policy, Token   Plan, Event
//	operator       all               all            all              all                       read
//	tenant-admin   all               read           hidden (404)     forbidden (403)           read own
//	tenant-viewer  read              read           hidden (404)     forbidden (403)           read own
//	node           forbidden         forbidden      forbidden        forbidden                 forbidden
//
// Node objects (heartbeats, desired replicas): an operator may do
// everything; a node token may get and apply (heartbeat) its own node
// only; tenant roles may not.
func Decide(p Principal, v Verb, o Object) Decision {
	if p.Validate() != nil {
		return Forbid
	}
	if p.Role == NodeAgent {
		if o.Kind == KindNode && o.Node == p.Node && (v == Get || v == Apply) {
			return Allow
		}
		return Forbid
	}
	if o.Kind == KindNode && p.Role != Operator {
		return Forbid
	}
	read := v == Get || v == List
	switch o.Kind {
	case KindPlan, KindEvent:
		if read {
			return Allow // the answer is filtered to what p sees
		}
		return Forbid
	}
	if p.Role == Operator {
		return Allow
	}
	switch o.Kind {
	case v1.KindWorkload, v1.KindTenant, v1.KindSecret, v1.KindVolume:
		if o.Tenant == "" && v == List {
			return Allow // the list is filtered to what p sees
		}
		if !p.Sees(o.Tenant) {
			return Hide
		}
		if read || o.Kind != v1.KindTenant && p.Role == TenantAdmin {
			return Allow
		}
		return Forbid
	}
	return Forbid
}
