package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// tokensDir holds one record per token, keyed by the token's public ID.
const tokensDir = "/tokens"

// authenticate resolves the bearer token to a principal in the request's
// context, or answers 401. Every failure gets the same answer, and costs
// no audit write of its own (see denials): an address that keeps failing
// is answered 429 before its tokens are even looked at, and a token that
// sends too much gets 429 too.
func (s *Server) authenticate(next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		addr := clientAddr(r)
		if wait := s.limits.addressBlocked(addr); wait > 0 {
			s.throttled(addr, "address")
			return tooMany(wait, "too many failed sign-ins from your address")
		}
		h := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(h, " ")
		if h == "" || !strings.EqualFold(scheme, "Bearer") {
			s.unauthenticated(addr, "missing")
			return newError(http.StatusUnauthorized, wire.CodeUnauthenticated,
				"missing bearer token: pass --token, or use the client config that `rung up` writes")
		}
		p, err := s.lookupToken(r.Context(), strings.TrimSpace(token))
		if err != nil {
			if !errors.Is(err, auth.ErrBadToken) {
				return err
			}
			s.unauthenticated(addr, "invalid")
			return &httpError{Status: http.StatusUnauthorized, Code: wire.CodeUnauthenticated,
				Msg: "invalid bearer token: it is malformed, expired, revoked or unknown", Err: err}
		}
		if wait := s.limits.tokenWait(p); wait > 0 {
			s.throttled(addr, "token")
			return tooMany(wait, "too many requests with this token")
		}
		return next(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}
}

// lookupToken returns the principal of a token (rung's own, or a JWT when
// OIDC is configured), or auth.ErrBadToken. A rung token must be stored,
// match its hash, be unexpired and, for a tenant role, belong to the
// tenant that exists now under its name (same unique id).
func (s *Server) lookupToken(ctx context.Context, token string) (auth.Principal, error) {
	if s.oidc != nil && auth.LooksLikeJWT(token) {
		p, err := s.oidc.Verify(token, s.now())
		if err != nil {
			return auth.Principal{}, err
		}
		p.ID = sanitizeID(p.ID)
		if p.Tenant != "" {
			if !v1.IsDNSLabel(p.Tenant) {
				return auth.Principal{}, fmt.Errorf("jwt tenant %q: %w", truncate(p.Tenant, 64), auth.ErrBadToken)
			}
			if _, err := s.store.Get(ctx, tenantKey(p.Tenant)); errors.Is(err, store.ErrNotFound) {
				return auth.Principal{}, fmt.Errorf("jwt tenant %s: no such tenant: %w", p.Tenant, auth.ErrBadToken)
			} else if err != nil {
				return auth.Principal{}, err
			}
		}
		return p, nil
	}
	id, secret, err := auth.ParseToken(token)
	if err != nil {
		return auth.Principal{}, err
	}
	v, err := s.store.Get(ctx, tokensDir+"/"+id)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Principal{}, fmt.Errorf("token %s: %w", id, auth.ErrBadToken)
	}
	if err != nil {
		return auth.Principal{}, fmt.Errorf("read token %s: %w", id, err)
	}
	var rec auth.Record
	if err := json.Unmarshal(v.Data, &rec); err != nil {
		return auth.Principal{}, fmt.Errorf("decode token %s: %w", id, err)
	}
	if !rec.Check(secret) || rec.Principal.Validate() != nil {
		return auth.Principal{}, fmt.Errorf("token %s: %w", id, auth.ErrBadToken)
	}
	if rec.Expired(s.now()) {
		return auth.Principal{}, fmt.Errorf("token %s: expired %s: %w", id, rec.Expires.Format(time.RFC3339), auth.ErrBadToken)
	}
	if rec.Tenant != "" {
		uid, _, err := s.tenantUID(ctx, rec.Tenant)
		switch {
		case errors.Is(err, store.ErrNotFound), err == nil && (rec.TenantUID == "" || uid != rec.TenantUID):
			// Its tenant is gone (or was made again): fail closed, also for
			// tokens made before tenants had ids.
			return auth.Principal{}, fmt.Errorf("token %s: tenant %s is not the one it was made for: %w", id, rec.Tenant, auth.ErrBadToken)
		case err != nil:
			return auth.Principal{}, err
		}
	}
	return rec.Principal, nil
}

// sanitizeID keeps an identity from outside (a JWT's subject) to
// printable ASCII, for logs and the audit log.
func sanitizeID(id string) string {
	b := []byte(id)
	for i, c := range b {
		if c < 0x21 || c > 0x7e {
			b[i] = '_'
		}
	}
	return string(b)
}

// principal is the authenticated caller; authenticate guarantees one.
func principal(ctx context.Context) auth.Principal {
	p, _ := auth.FromContext(ctx)
	return p
}

// authorize asks auth.Decide and turns a denial into the client's answer
// (403, or for another tenant's objects the very 404 of a missing one),
// recording it in the audit log and the metrics.
func (s *Server) authorize(ctx context.Context, v auth.Verb, o auth.Object, name string) error {
	p := principal(ctx)
	switch auth.Decide(p, v, o) {
	case auth.Allow:
		return nil
	case auth.Hide:
		s.deny(ctx, p, string(v), o, name, wire.CodeNotFound, "another tenant's object")
		kind := o.Kind
		if name == "" {
			kind = ""
		}
		if o.Kind == v1.KindTenant {
			return notFound(v1.KindTenant, "", o.Tenant)
		}
		return notFound(kind, o.Tenant, name)
	}
	s.deny(ctx, p, string(v), o, name, wire.CodeForbidden, "role does not allow it")
	return newError(http.StatusForbidden, wire.CodeForbidden, "%s", forbiddenMessage(p, v, o))
}

// forbiddenMessage says who was refused what and which token would do:
// "token 1a2b… (tenant-viewer of biology) may not apply workloads of
// tenant biology; this needs a tenant-admin token of biology or an
// operator token".
func forbiddenMessage(p auth.Principal, v auth.Verb, o auth.Object) string {
	what := lower(o.Kind) + "s"
	switch o.Kind {
	case v1.KindPolicy:
		what = "policies"
	case v1.KindTopology:
		what = "topologies"
	case auth.KindMetrics:
		what = "metrics"
	}
	tenant := o.Tenant
	if tenant == "" {
		tenant = p.Tenant
	}
	if o.Kind == v1.KindWorkload && tenant != "" {
		what += " of tenant " + tenant
	}
	who := string(p.Role)
	switch {
	case p.Tenant != "":
		who += " of tenant " + p.Tenant
	case p.Node != "":
		who += " of node " + p.Node
	}
	need := "an operator token"
	if o.Kind == v1.KindWorkload && tenant != "" {
		need = "a tenant-admin token of " + tenant + " or an operator token"
	}
	return fmt.Sprintf("token %s (%s) may not %s %s; this needs %s", p.ID, who, v, what, need)
}

// deny records a refused request in the audit log and the metrics. A
// failure to record is logged: the request is refused either way.
func (s *Server) deny(ctx context.Context, p auth.Principal, action string, o auth.Object, name, code, why string) {
	s.metrics.denials.WithLabelValues(code).Inc()
	e := Entry{
		Actor: actor(p), ActorTenant: p.Tenant, Action: action, Kind: o.Kind, Tenant: o.Tenant, Name: name,
		Result: code, Message: why, RequestID: requestID(ctx),
	}
	if _, _, err := s.audit.Append(context.WithoutCancel(ctx), e.record()); err != nil {
		s.log.Error("audit: record denial", "id", requestID(ctx), "err", err)
	}
}

func actor(p auth.Principal) string {
	if p.ID == "" {
		return "anonymous"
	}
	return p.String()
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	p := principal(r.Context())
	writeJSON(w, http.StatusOK, wire.WhoAmI{ID: p.ID, Role: string(p.Role), Tenant: p.Tenant})
	return nil
}

// TokenValid reports whether token is a stored, matching token, for the
// wiring that reuses an admin token across restarts.
func (s *Server) TokenValid(ctx context.Context, token string) (bool, error) {
	_, err := s.lookupToken(ctx, token)
	if errors.Is(err, auth.ErrBadToken) {
		return false, nil
	}
	return err == nil, err
}
