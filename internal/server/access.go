package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// tokensDir holds one record per token, keyed by the token's public ID.
const tokensDir = "/tokens"

// authenticate resolves the bearer token to a principal in the request's
// context, or answers 401. Every failure gets the same answer.
func (s *Server) authenticate(next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		h := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(h, " ")
		if h == "" || !strings.EqualFold(scheme, "Bearer") {
			s.deny(r.Context(), auth.Principal{}, "authenticate", auth.Object{}, "", wire.CodeUnauthenticated, "no bearer token")
			return newError(http.StatusUnauthorized, wire.CodeUnauthenticated,
				"missing bearer token: pass --token, or use the client config that `rung up` writes")
		}
		p, err := s.lookupToken(r.Context(), strings.TrimSpace(token))
		if err != nil {
			if !errors.Is(err, auth.ErrBadToken) {
				return err
			}
			s.deny(r.Context(), auth.Principal{}, "authenticate", auth.Object{}, "", wire.CodeUnauthenticated, "invalid token")
			return &httpError{Status: http.StatusUnauthorized, Code: wire.CodeUnauthenticated,
				Msg: "invalid bearer token: it is malformed, revoked or unknown", Err: err}
		}
		return next(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	}
}

// lookupToken returns the principal of a token, or auth.ErrBadToken.
func (s *Server) lookupToken(ctx context.Context, token string) (auth.Principal, error) {
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
	return rec.Principal, nil
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

func forbiddenMessage(p auth.Principal, v auth.Verb, o auth.Object) string {
	what := lower(o.Kind) + "s"
	switch o.Kind {
	case v1.KindPolicy:
		what = "policies"
	case v1.KindTopology:
		what = "topologies"
	}
	need := "an operator"
	if o.Kind == v1.KindWorkload {
		need = "a tenant-admin of " + o.Tenant + " or an operator"
	}
	return fmt.Sprintf("role %s may not %s %s; this needs %s token", p.Role, v, what, need)
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

// createToken makes a token (operator only) and stores its hash.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := s.authorize(ctx, auth.Apply, auth.Object{Kind: auth.KindToken}, ""); err != nil {
		return err
	}
	var req wire.TokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return badRequest("role: %v", err)
	}
	p := auth.Principal{Role: role, Tenant: req.Tenant, Node: req.Node}
	if err := p.Validate(); err != nil {
		return badRequest("%v", err)
	}
	if len(req.Description) > 256 {
		return badRequest("description: longer than 256 bytes; shorten it")
	}
	if p.Node != "" && !isDNSLabel(p.Node) {
		return badRequest("node %q is not a valid name (a DNS label such as n1)", truncate(p.Node, 64))
	}
	if p.Tenant != "" {
		if !isDNSLabel(p.Tenant) {
			return badRequest("tenant %q is not a valid name (a DNS label such as biology)", truncate(p.Tenant, 64))
		}
		if _, err := s.store.Get(ctx, tenantKey(p.Tenant)); errors.Is(err, store.ErrNotFound) {
			return notFound(v1.KindTenant, "", p.Tenant)
		} else if err != nil {
			return err
		}
	}
	token, rec, err := s.IssueToken(ctx, principal(ctx), p, req.Description)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, wire.TokenResponse{ID: rec.ID, Role: string(rec.Role), Tenant: rec.Tenant, Node: rec.Node, Token: token})
	return nil
}

// IssueToken makes a token for p, stores its record and audits it, in one
// transaction. by is who asked (empty for the bootstrap admin token).
func (s *Server) IssueToken(ctx context.Context, by, p auth.Principal, description string) (string, auth.Record, error) {
	token, rec, err := auth.NewToken(s.random, p, s.now(), description)
	if err != nil {
		return "", auth.Record{}, err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return "", auth.Record{}, err
	}
	who := "rung up"
	if by.ID != "" {
		who = by.String()
	}
	e := Entry{Actor: who, ActorTenant: by.Tenant, Action: "token.create", Kind: auth.KindToken, Tenant: p.Tenant, Name: rec.ID,
		Result: wire.Created, Message: "role " + string(p.Role), RequestID: requestID(ctx)}
	if _, err := s.commit(ctx, e, store.PutOp(tokensDir+"/"+rec.ID, data, store.Create)); err != nil {
		return "", auth.Record{}, fmt.Errorf("store token: %w", err)
	}
	return token, rec, nil
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
