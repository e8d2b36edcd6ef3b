package server

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// AuditLog is the append-only audit log as the server uses it;
// *audit.Log is one.
type AuditLog interface {
	// Append records r and applies ops in one store transaction: the
	// change and its record commit together or not at all. A failed
	// precondition of ops wraps the store's sentinel error.
	Append(ctx context.Context, r audit.Record, ops ...store.Op) (audit.Entry, int64, error)
	// Entries returns up to limit entries after seq after, in order.
	Entries(ctx context.Context, after uint64, limit int) ([]audit.Entry, error)
}

// Entry is one audit record as the server writes it: who did what to
// which object, and the outcome.
type Entry struct {
	Actor string
	// ActorTenant is the tenant of the actor's role; empty for operators
	// and unauthenticated callers.
	ActorTenant string
	Action      string // apply, delete, token.create, authenticate, get, list, ...
	Kind        string
	Tenant      string
	Name        string
	Result      string // created, updated, deleted, or the error code of a denial
	Message     string
	RequestID   string
	// Admission is the admission decision of an applied workload: every
	// check that ran or was skipped, and every finding (DESIGN §6).
	Admission *policy.Decision
}

// details is the JSON Details of the server's audit records.
type details struct {
	Result      string           `json:"result"`
	Message     string           `json:"message,omitempty"`
	ActorTenant string           `json:"actorTenant,omitempty"`
	RequestID   string           `json:"requestID,omitempty"`
	Admission   *policy.Decision `json:"admission,omitempty"`
}

// resultAdmitted is the Result of an admission decision that allowed.
const resultAdmitted = "admitted"

// AuditNodeDecisions appends the admission decisions node made (its image
// checks and refusals of final runtime specs) to the audit log, one entry
// each, by the node's identity (DESIGN §6: every admission decision, with
// its findings and the image digest).
func (s *Server) AuditNodeDecisions(ctx context.Context, node string, ds []policy.Decision) error {
	for i := range ds {
		bd := ds[i].Bounded() // one entry each, whatever the image
		d := &bd
		kind := "Image"
		if d.Kind == policy.KindWorkload {
			kind = "Workload"
		}
		result := resultAdmitted
		if !d.Allowed {
			result = wire.CodeRejected
		}
		e := Entry{Actor: "node/" + node, Action: "admit", Kind: kind, Tenant: d.Tenant, Name: truncate(d.Subject, 256),
			Result: result, Message: nodeDecisionMessage(node, d), Admission: d}
		if _, err := s.commit(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// nodeDecisionMessage says where and on what a node decided, and why it
// refused: the digest and the findings' IDs, for `rung get events`.
func nodeDecisionMessage(node string, d *policy.Decision) string {
	msg := "on node " + node
	if d.Digest != "" {
		msg += ", image " + d.Digest
	}
	if len(d.Findings) > 0 {
		ids := make([]string, 0, len(d.Findings))
		for _, f := range d.Findings {
			ids = append(ids, f.ID)
		}
		msg += ": " + strings.Join(slices.Compact(slices.Sorted(slices.Values(ids))), ", ")
	}
	return msg
}

// record is e as an audit.Record. Denials (results that are error codes)
// are Deny decisions; changes are plain records.
func (e Entry) record() audit.Record {
	d, _ := json.Marshal(details{Result: e.Result, Message: truncate(e.Message, 4096), ActorTenant: e.ActorTenant, RequestID: e.RequestID, Admission: e.Admission})
	obj := e.Kind
	switch {
	case e.Tenant != "" && e.Name != "" && e.Kind != "Tenant":
		obj += "/" + e.Tenant + "/" + e.Name
	case e.Name != "":
		obj += "/" + e.Name
	}
	decision := ""
	switch e.Result {
	case wire.Created, wire.Updated, "deleted", resultAdmitted, resultExecuted, resultApplied:
	default:
		decision = audit.Deny
	}
	return audit.Record{Actor: e.Actor, Tenant: e.Tenant, Action: e.Action, Object: obj, Decision: decision, Details: d}
}

// commit applies ops with e's audit record in one transaction.
func (s *Server) commit(ctx context.Context, e Entry, ops ...store.Op) (int64, error) {
	if o, ok := ctx.Value(batchKey{}).(*overlay); ok {
		// Batched (batch.go): committed with the batch.
		if err := o.stage(ctx, e.record(), ops); err != nil {
			return 0, err
		}
		return o.pend, nil
	}
	_, rev, err := s.audit.Append(ctx, e.record(), ops...)
	return rev, err
}

// event is an audit entry as the event API shows it.
func event(a audit.Entry) wire.Event {
	var d details
	_ = json.Unmarshal(a.Details, &d)
	ev := wire.Event{
		Seq: int64(a.Seq), Time: a.Time, Actor: a.Actor, ActorTenant: d.ActorTenant, Action: a.Action,
		Tenant: a.Tenant, Result: d.Result, Message: d.Message,
	}
	parts := strings.SplitN(a.Object, "/", 3)
	ev.Kind = parts[0]
	switch len(parts) {
	case 2:
		ev.Name = parts[1]
	case 3:
		ev.Name = parts[2]
	}
	if ev.Result == "" {
		ev.Result = a.Decision
	}
	return ev
}
