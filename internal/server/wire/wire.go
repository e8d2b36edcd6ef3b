// Package wire holds the JSON shapes of rung's /v1 HTTP API that are not
// manifests: errors, apply results, lists, events and tokens. The server
// writes them and the typed client reads them; objects themselves travel
// as api/v1 manifests.
package wire

import (
	"encoding/json"
	"strings"
	"time"
)

// MaxBody is the largest request body the API reads, in bytes.
const MaxBody = 1 << 20

// RevisionHeader carries the store revision of the object a GET returns.
const RevisionHeader = "Rung-Revision"

// Error codes: the stable, machine-readable part of an Error.
const (
	CodeInvalid         = "invalid"         // 400/422: the request or manifest is wrong
	CodeUnauthenticated = "unauthenticated" // 401: no valid bearer token
	CodeForbidden       = "forbidden"       // 403: the role may not do this
	CodeNotFound        = "not_found"       // 404: no such object (or not yours)
	CodeMethod          = "method_not_allowed"
	CodeConflict        = "conflict"  // 409: the object is in use or changed concurrently
	CodeTooLarge        = "too_large" // 413: the body exceeds MaxBody
	CodeMediaType       = "unsupported_media_type"
	CodeQuota           = "quota_exceeded"    // 403: the tenant's quota does not allow it
	CodeRejected        = "rejected"          // 422: admission checks failed; details list every finding
	CodeTooMany         = "too_many_requests" // 429: rate limited; see Retry-After
	CodeExpired         = "expired"           // 410: a list's continue is no longer valid; list again
	CodeInternal        = "internal"          // 500: see the server log for the request ID
	CodeUnavailable     = "unavailable"       // 503: shutting down or the store does not answer; see Retry-After
)

// Error is the body of every error response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Details lists every problem when there are several, e.g. one line per
	// invalid field of a manifest.
	Details []string `json:"details,omitempty"`
	// RequestID matches the server log entry for this request.
	RequestID string `json:"requestID,omitempty"`
}

// Results of an apply.
const (
	Created   = "created"
	Updated   = "updated"
	Unchanged = "unchanged"
)

// ApplyResult is the answer to a PUT of one object.
type ApplyResult struct {
	Kind   string `json:"kind"`
	Tenant string `json:"tenant,omitempty"`
	Name   string `json:"name"`
	// Result is Created, Updated or Unchanged (nothing was written).
	Result string `json:"result"`
	// Revision is the store revision of the object as it now is.
	Revision int64 `json:"revision"`
}

// DeleteResult is the answer to a DELETE.
type DeleteResult struct {
	Kind     string `json:"kind"`
	Tenant   string `json:"tenant,omitempty"`
	Name     string `json:"name"`
	Revision int64  `json:"revision"`
}

// List is the answer to a list request: manifests of one kind, in key
// order, as of one store revision.
type List struct {
	Items    []Item `json:"items"`
	Revision int64  `json:"revision"`
	// Continue, when set, is the ?continue= of the next page (pass
	// ?limit= to get pages); every page is read at Revision.
	Continue string `json:"continue,omitempty"`
}

// Item is one listed object with the revision of its last change.
type Item struct {
	Revision int64           `json:"revision"`
	Object   json.RawMessage `json:"object"`
}

// Event is one entry of the event log: a change or a denial.
type Event struct {
	Seq   int64     `json:"seq"`
	Time  time.Time `json:"time"`
	Actor string    `json:"actor"`
	// ActorTenant is the tenant the actor's role is scoped to, if any.
	ActorTenant string `json:"actorTenant,omitempty"`
	Action      string `json:"action"`
	Kind        string `json:"kind,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
	Name        string `json:"name,omitempty"`
	// Result is what happened: created, updated, deleted, or the reason of a
	// denial (forbidden, not_found, invalid, quota_exceeded, ...).
	Result  string `json:"result"`
	Message string `json:"message,omitempty"`
}

// Object names what e is about as people read it: "Workload acme/web",
// "Tenant acme", "Token 1a2b…", or "" for none.
func (e Event) Object() string {
	if e.Kind == "" || e.Kind == "Tenant" || e.Tenant == "" {
		return strings.TrimSpace(e.Kind + " " + e.Name)
	}
	return strings.TrimSuffix(e.Kind+" "+e.Tenant+"/"+e.Name, "/")
}

// Events is the answer to GET /v1/events.
type Events struct {
	Events []Event `json:"events"`
	// Next is the seq to pass as ?after= for the following page.
	Next int64 `json:"next"`
}

// TokenRequest asks for a new token (POST /v1/tokens).
type TokenRequest struct {
	Role        string `json:"role"`
	Tenant      string `json:"tenant,omitempty"`
	Node        string `json:"node,omitempty"` // for role node
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	// TTL is the token's lifetime, such as "720h" or "30d" (default 90d).
	TTL string `json:"ttl,omitempty"`
}

// TokenResponse holds a new token. The token itself is shown only once.
type TokenResponse struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Role   string `json:"role"`
	Tenant string `json:"tenant,omitempty"`
	Node   string `json:"node,omitempty"`
	// Expires is zero for a token that never expires (the admin token).
	Expires time.Time `json:"expires,omitzero"`
	Token   string    `json:"token"`
	// Warning says what went wrong after the token was made (rung up could
	// not write a rotated admin token to its files).
	Warning string `json:"warning,omitempty"`
}

// Token states in TokenInfo.State.
const (
	TokenActive  = "active"
	TokenExpired = "expired"
	// TokenTenantGone: its tenant was deleted (and perhaps made again):
	// the token no longer works.
	TokenTenantGone = "tenant-deleted"
)

// TokenInfo is one token as GET /v1/tokens lists it: never its secret.
type TokenInfo struct {
	ID          string    `json:"id"`
	Name        string    `json:"name,omitempty"`
	Role        string    `json:"role"`
	Tenant      string    `json:"tenant,omitempty"`
	Node        string    `json:"node,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires,omitzero"`
	// Admin marks rung up's admin token.
	Admin bool   `json:"admin,omitempty"`
	State string `json:"state"`
}

// TokenList is the answer to GET /v1/tokens.
type TokenList struct {
	Items    []TokenInfo `json:"items"`
	Revision int64       `json:"revision"`
	// Continue, when set, is the ?continue= of the next page.
	Continue string `json:"continue,omitempty"`
}

// WhoAmI is the answer to GET /v1/whoami.
type WhoAmI struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	Tenant string `json:"tenant,omitempty"`
}

// SecretKey is one key of a Secret as the API shows it: its name and a
// keyed digest of its value (which changes when the value does), never
// the value.
type SecretKey struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

// SecretInfo is a Secret as GET shows it: write-only, so no values.
type SecretInfo struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Tenant string            `json:"tenant"`
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Keys     []SecretKey `json:"keys"`
	Revision int64       `json:"revision"`
}

// SecretList is the answer to a list of secrets.
type SecretList struct {
	Items    []SecretInfo `json:"items"`
	Revision int64        `json:"revision"`
	Continue string       `json:"continue,omitempty"`
}

// KeyRotation is the answer to POST /v1/secrets/rotate-key.
type KeyRotation struct {
	// KeyID is the new primary key's id.
	KeyID string `json:"keyID"`
	// Resealed is how many secrets were sealed again under it.
	Resealed int `json:"resealed"`
	// Retired says the older keys were dropped (nothing needs them).
	Retired bool `json:"retired"`
}
