package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	v1 "rung.dev/rung/api/v1"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// Token lifetimes (DESIGN §11: tokens expire).
const (
	// DefaultTokenTTL is the lifetime of a token made without a TTL.
	DefaultTokenTTL = 90 * 24 * time.Hour
	// MaxTokenTTL is the longest lifetime a token may be given.
	MaxTokenTTL = 366 * 24 * time.Hour
)

// tenantUIDsDir holds each tenant's unique id (/tenantuids/NAME), made
// with the tenant and deleted with it. Tenant tokens carry the id they
// were made for, so that a tenant deleted and made again under the same
// name gets none of the old tenant's tokens.
const tenantUIDsDir = "/tenantuids"

// adminDescription is the description of rung up's admin token (tokens
// made before the Admin mark are recognised by it).
const adminDescription = "admin token of rung up"

// TokenOptions are the optional parts of a new token.
type TokenOptions struct {
	// Name is a short label for `rung token list`.
	Name string
	// Description says who or what the token is for.
	Description string
	// TTL is the token's lifetime: 0 for DefaultTokenTTL. Admin tokens
	// never expire.
	TTL time.Duration
}

// tenantUID returns the unique id of tenant and the revision of its key;
// store.ErrNotFound when the tenant has none (it does not exist, or was
// made before ids were).
func (s *Server) tenantUID(ctx context.Context, tenant string) (string, int64, error) {
	v, err := s.store.Get(ctx, tenantUIDsDir+"/"+tenant)
	if err != nil {
		return "", 0, err
	}
	return string(v.Data), v.Revision, nil
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tenantUIDOps are the ops that give tenant a unique id when it is made
// (or, for a tenant made before ids, when it is next changed).
func (s *Server) tenantUIDOps(ctx context.Context, tenant string, creating bool) ([]store.Op, error) {
	_, rev, err := s.tenantUID(ctx, tenant)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return []store.Op{store.PutOp(tenantUIDsDir+"/"+tenant, []byte(newUID()), store.Create)}, nil
	case err != nil:
		return nil, err
	case creating: // a leftover id must not let old tokens in
		return []store.Op{store.PutOp(tenantUIDsDir+"/"+tenant, []byte(newUID()), rev)}, nil
	}
	return nil, nil
}

// tenantDeleteOps revoke every token of tenant with it: its id goes.
func (s *Server) tenantDeleteOps(ctx context.Context, tenant string) ([]store.Op, error) {
	_, rev, err := s.tenantUID(ctx, tenant)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return []store.Op{store.DeleteOp(tenantUIDsDir+"/"+tenant, rev)}, nil
}

// sweepTenantTokens deletes the records of a deleted tenant's tokens
// (they stopped working with its id; this only keeps `token list` clean).
func (s *Server) sweepTenantTokens(ctx context.Context, tenant string) {
	recs, _, err := s.tokenRecords(ctx)
	if err != nil {
		s.log.Warn("sweep tokens of deleted tenant", "tenant", tenant, "err", err)
		return
	}
	for _, r := range recs {
		if r.rec.Tenant == tenant {
			if _, err := s.store.Delete(ctx, r.key, r.rev); err != nil && !errors.Is(err, store.ErrConflict) {
				s.log.Warn("sweep tokens of deleted tenant", "tenant", tenant, "token", r.rec.ID, "err", err)
			}
		}
	}
}

// NewToken makes a token for p, stores its record (a tenant token bound
// to the tenant's unique id) and audits it, in one transaction. by is who
// asked (empty for rung up itself).
func (s *Server) NewToken(ctx context.Context, by, p auth.Principal, o TokenOptions) (string, auth.Record, error) {
	if o.TTL == 0 {
		o.TTL = DefaultTokenTTL
	}
	if o.TTL < 0 || o.TTL > MaxTokenTTL {
		return "", auth.Record{}, badRequest("ttl: %v is out of range; give a duration from 1m to %v (such as 720h)", o.TTL, MaxTokenTTL)
	}
	return s.issue(ctx, by, p, o, notAdmin)
}

// IssueToken is NewToken with a description only.
func (s *Server) IssueToken(ctx context.Context, by, p auth.Principal, description string) (string, auth.Record, error) {
	return s.NewToken(ctx, by, p, TokenOptions{Description: description})
}

// IssueAdminToken makes a new admin (operator) token that never expires,
// named name, and revokes in the same transaction the earlier admin
// tokens of that name (those of the same rung up: several may share one
// etcd, each with its own admin token).
func (s *Server) IssueAdminToken(ctx context.Context, by auth.Principal, name string) (string, auth.Record, error) {
	return s.issue(ctx, by, auth.Principal{Role: auth.Operator}, TokenOptions{Name: name, Description: adminDescription}, adminSameName)
}

// How a new token treats earlier admin tokens.
type adminMode int

const (
	notAdmin      adminMode = iota
	adminSameName           // revoke the admin tokens of the same name
	adminAll                // revoke every admin token (rotation)
)

func (s *Server) issue(ctx context.Context, by, p auth.Principal, o TokenOptions, mode adminMode) (string, auth.Record, error) {
	admin := mode != notAdmin
	now := s.now()
	token, rec, err := auth.NewToken(s.random, p, now, o.Description)
	if err != nil {
		return "", auth.Record{}, err
	}
	rec.Name, rec.Admin = o.Name, admin
	if !admin {
		rec.Expires = rec.Created.Add(o.TTL)
	}
	var ops []store.Op
	if p.Tenant != "" {
		// The tenant must exist now and keep its id until the token is stored.
		t, err := s.storedTenant(ctx, p.Tenant)
		if err != nil {
			return "", auth.Record{}, err
		}
		uid, rev, err := s.tenantUID(ctx, p.Tenant)
		switch {
		case errors.Is(err, store.ErrNotFound): // made before ids
			uid = newUID()
			ops = append(ops, store.PutOp(tenantUIDsDir+"/"+p.Tenant, []byte(uid), store.Create), store.CheckOp(t.Key, t.Revision))
		case err != nil:
			return "", auth.Record{}, err
		default:
			ops = append(ops, store.CheckOp(tenantUIDsDir+"/"+p.Tenant, rev))
		}
		rec.TenantUID = uid
	}
	action, msg := "token.create", "role "+string(p.Role)
	if admin {
		old, _, err := s.tokenRecords(ctx)
		if err != nil {
			return "", auth.Record{}, err
		}
		n := 0
		for _, r := range old {
			if isAdmin(r.rec) && (mode == adminAll || r.rec.Name == o.Name) && len(ops) < store.MaxTxnOps-1 {
				ops = append(ops, store.DeleteOp(r.key, r.rev))
				n++
			}
		}
		action, msg = "token.rotate-admin", fmt.Sprintf("new admin token; %d earlier admin token(s) revoked", n)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return "", auth.Record{}, err
	}
	who := "rung up"
	if by.ID != "" {
		who = by.String()
	}
	e := Entry{Actor: who, ActorTenant: by.Tenant, Action: action, Kind: auth.KindToken, Tenant: p.Tenant, Name: rec.ID,
		Result: wire.Created, Message: msg, RequestID: requestID(ctx)}
	ops = append([]store.Op{store.PutOp(tokensDir+"/"+rec.ID, data, store.Create)}, ops...)
	if _, err := s.commit(ctx, e, ops...); err != nil {
		if retryable(err) {
			return "", auth.Record{}, &httpError{Status: http.StatusConflict, Code: wire.CodeConflict,
				Msg: "the tenant or the tokens changed meanwhile; retry", Err: err}
		}
		return "", auth.Record{}, fmt.Errorf("store token: %w", err)
	}
	return token, rec, nil
}

func isAdmin(r auth.Record) bool {
	return r.Admin || r.Role == auth.Operator && r.Description == adminDescription
}

// storedToken is a token record with its key and revision.
type storedToken struct {
	key string
	rev int64
	rec auth.Record
}

// tokenRecords reads every token record.
func (s *Server) tokenRecords(ctx context.Context) ([]storedToken, int64, error) {
	vals, rev, err := s.store.List(ctx, tokensDir)
	if err != nil {
		return nil, 0, fmt.Errorf("list tokens: %w", err)
	}
	out := make([]storedToken, 0, len(vals))
	for _, v := range vals {
		var rec auth.Record
		if err := json.Unmarshal(v.Data, &rec); err != nil {
			return nil, 0, fmt.Errorf("decode token %s: %w", v.Key, err)
		}
		out = append(out, storedToken{key: v.Key, rev: v.Revision, rec: rec})
	}
	return out, rev, nil
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
	if !isPrintable(req.Name, 64) {
		return badRequest("name: at most 64 printable characters, such as ci-deploy")
	}
	if p.Node != "" && !v1.IsDNSLabel(p.Node) {
		return badRequest("node %q is not a valid name (a DNS label such as n1)", truncate(p.Node, 64))
	}
	if p.Tenant != "" && !v1.IsDNSLabel(p.Tenant) {
		return badRequest("tenant %q is not a valid name (a DNS label such as biology)", truncate(p.Tenant, 64))
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = ParseTTL(req.TTL); err != nil {
			return badRequest("ttl: %v", err)
		}
	}
	token, rec, err := s.NewToken(ctx, principal(ctx), p, TokenOptions{Name: req.Name, Description: req.Description, TTL: ttl})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, wire.TokenResponse{ID: rec.ID, Name: rec.Name, Role: string(rec.Role), Tenant: rec.Tenant, Node: rec.Node,
		Expires: rec.Expires, Token: token})
	return nil
}

// ParseTTL reads a token lifetime: a Go duration ("720h", "90m") or a
// number of days ("30d"), from one minute to MaxTokenTTL.
func ParseTTL(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err = time.ParseDuration(n + "h")
		if d > MaxTokenTTL/24 {
			d = MaxTokenTTL + 1 // out of range, before d*24 can wrap around into it
		} else {
			d *= 24
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; use hours or days, such as 720h or 30d", truncate(s, 32))
	}
	if d < time.Minute || d > MaxTokenTTL {
		return 0, fmt.Errorf("%q is out of range; give 1m to %dd", truncate(s, 32), MaxTokenTTL/(24*time.Hour))
	}
	return d, nil
}

func isPrintable(s string, n int) bool {
	if len(s) > n {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// listTokens lists every token's record, never a secret or hash
// (operators only).
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := s.authorize(ctx, auth.List, auth.Object{Kind: auth.KindToken}, ""); err != nil {
		return err
	}
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	pg, err := s.listPage(ctx, tokensDir, page)
	if err != nil {
		return err
	}
	uids := map[string]string{}
	now := s.now()
	out := wire.TokenList{Items: make([]wire.TokenInfo, 0, len(pg.Values)), Revision: pg.Revision}
	for _, v := range pg.Values {
		var rec auth.Record
		if err := json.Unmarshal(v.Data, &rec); err != nil {
			return fmt.Errorf("decode token %s: %w", v.Key, err)
		}
		info := wire.TokenInfo{ID: rec.ID, Name: rec.Name, Role: string(rec.Role), Tenant: rec.Tenant, Node: rec.Node,
			Description: rec.Description, Created: rec.Created, Expires: rec.Expires, Admin: isAdmin(rec), State: wire.TokenActive}
		if rec.Expired(now) {
			info.State = wire.TokenExpired
		}
		if rec.Tenant != "" {
			uid, ok := uids[rec.Tenant]
			if !ok {
				uid, _, err = s.tenantUID(ctx, rec.Tenant)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				uids[rec.Tenant] = uid
			}
			if uid == "" || uid != rec.TenantUID {
				info.State = wire.TokenTenantGone
			}
		}
		out.Items = append(out.Items, info)
	}
	if pg.More {
		out.Continue = next(pg.Values[len(pg.Values)-1].Key, pg.Revision)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeToken deletes a token's record: the token stops working at once.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := s.authorize(ctx, auth.Delete, auth.Object{Kind: auth.KindToken}, ""); err != nil {
		return err
	}
	id := r.PathValue("id")
	if !isTokenID(id) {
		return badRequest("token id %q is malformed: it is the 16 hex digits `rung token list` shows", truncate(id, 32))
	}
	key := tokensDir + "/" + id
	cur, err := s.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(auth.KindToken, "", id)
	} else if err != nil {
		return err
	}
	var rec auth.Record
	_ = json.Unmarshal(cur.Data, &rec)
	p := principal(ctx)
	e := Entry{Actor: actor(p), ActorTenant: p.Tenant, Action: "token.revoke", Kind: auth.KindToken, Tenant: rec.Tenant, Name: id,
		Result: "deleted", Message: "role " + string(rec.Role), RequestID: requestID(ctx)}
	rev, err := s.commit(ctx, e, store.DeleteOp(key, cur.Revision))
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return notFound(auth.KindToken, "", id)
	} else if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	writeJSON(w, http.StatusOK, wire.DeleteResult{Kind: auth.KindToken, Name: id, Revision: rev})
	return nil
}

func isTokenID(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// rotateAdmin makes a new admin token, revokes every earlier one (of
// every rung up sharing the store: their files go stale), and has
// rung up write the new one where it keeps it (Config.OnAdminToken).
func (s *Server) rotateAdmin(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := s.authorize(ctx, auth.Apply, auth.Object{Kind: auth.KindToken}, ""); err != nil {
		return err
	}
	token, rec, err := s.issue(ctx, principal(ctx), auth.Principal{Role: auth.Operator},
		TokenOptions{Name: s.adminName, Description: adminDescription}, adminAll)
	if err != nil {
		return err
	}
	res := wire.TokenResponse{ID: rec.ID, Name: rec.Name, Role: string(rec.Role), Token: token}
	if s.onAdminToken != nil {
		if err := s.onAdminToken(context.WithoutCancel(ctx), token); err != nil {
			// The token is made and the old one gone: the caller must get it.
			s.log.Error("rotate admin token: write the new one", "err", err)
			res.Warning = "rung up could not write the new token to its files; keep this one: " + err.Error()
		}
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}
