package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/sign"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/tenancy"
)

// Store layout. Objects are stored as canonical JSON manifests (defaults
// applied), so an apply of the same object writes nothing.
const (
	tenantsDir    = "/tenants"
	topologiesDir = "/topologies"
	policiesDir   = "/policies"
	workloadsDir  = "/workloads"  // /workloads/TENANT/NAME
	guardsDir     = "/guards"     // /guards/TENANT: bumped by every workload change of TENANT
	placementsDir = "/placements" // /placements/TENANT/NAME: the stored plan, see planner
)

// kind describes one object kind of the API.
type kind struct {
	name     string // the manifest kind
	plural   string // in URLs
	dir      string // in the store
	tenanted bool   // objects belong to a tenant (Workload)
}

var (
	kindTenant   = kind{name: v1.KindTenant, plural: "tenants", dir: tenantsDir}
	kindTopology = kind{name: v1.KindTopology, plural: "topologies", dir: topologiesDir}
	kindPolicy   = kind{name: v1.KindPolicy, plural: "policies", dir: policiesDir}
	kindWorkload = kind{name: v1.KindWorkload, plural: "workloads", dir: workloadsDir, tenanted: true}
	kindVolume   = kind{name: v1.KindVolume, plural: "volumes", dir: volumesDir, tenanted: true} // volumes.go
	kinds        = []kind{kindTenant, kindTopology, kindPolicy, kindWorkload, kindVolume}
)

func (k kind) key(tenant, name string) string {
	if k.tenanted {
		return k.dir + "/" + tenant + "/" + name
	}
	return k.dir + "/" + name
}

// object is what access control needs to know about an object.
func (k kind) object(tenant, name string) auth.Object { return objectOf(k.name, tenant, name) }

// objectOf is what RBAC decides on for the object of kind named
// tenant/name: a Tenant is its own tenant.
func objectOf(kind, tenant, name string) auth.Object {
	if kind == v1.KindTenant {
		tenant = name
	}
	return auth.Object{Kind: kind, Tenant: tenant}
}

// authorizePath is the tenant and name in r's path and their object of
// kind, once the caller may do v on it.
func (s *Server) authorizePath(r *http.Request, v auth.Verb, kind string) (tenant, name string, obj auth.Object, err error) {
	tenant, name, err = pathNames(r)
	if err != nil {
		return "", "", auth.Object{}, err
	}
	obj = objectOf(kind, tenant, name)
	if err := s.authorize(r.Context(), v, obj, name); err != nil {
		return "", "", auth.Object{}, err
	}
	return tenant, name, obj, nil
}

func tenantKey(name string) string { return kindTenant.key("", name) }

// storedTenant reads a tenant; a missing one is the 404 of another
// tenant's, so that the two look the same.
func (s *Server) storedTenant(ctx context.Context, name string) (store.Value, error) {
	v, err := s.store.Get(ctx, tenantKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return v, notFound(v1.KindTenant, "", name)
	}
	return v, err
}

// maxConflictRetries bounds how often a write is retried after a
// concurrent change to what it read.
const maxConflictRetries = 16

// pathNames returns the tenant and name of the request's path, checked to
// be DNS labels: nothing else can become a store key.
func pathNames(r *http.Request) (tenant, name string, err error) {
	for _, p := range []struct {
		field string
		val   *string
	}{{"tenant", &tenant}, {"name", &name}} {
		v := r.PathValue(p.field)
		if v == "" {
			continue
		}
		if !v1.IsDNSLabel(v) {
			return "", "", badRequest("%s %q in the path is not a valid name: use a DNS label (lowercase letters, digits and '-', at most 63, such as biology)",
				p.field, truncate(v, 64))
		}
		*p.val = v
	}
	return tenant, name, nil
}

func (s *Server) get(k kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		tenant, name, _, err := s.authorizePath(r, auth.Get, k.name)
		if err != nil {
			return err
		}
		v, err := s.store.Get(ctx, k.key(tenant, name))
		if errors.Is(err, store.ErrNotFound) {
			return notFound(k.name, tenant, name)
		}
		if err != nil {
			return fmt.Errorf("get %s: %w", k.key(tenant, name), err)
		}
		w.Header().Set(wire.RevisionHeader, strconv.FormatInt(v.Revision, 10))
		writeJSON(w, http.StatusOK, json.RawMessage(v.Data))
		return nil
	}
}

// list serves one page of the objects of a kind the caller may see
// (?limit=, ?continue=; pagination.go), every page of a list at the
// first page's store revision.
func (s *Server) list(k kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		dir, p, pg, err := s.listScope(r, k.name, k.dir, k.tenanted)
		if err != nil {
			return err
		}
		if r.URL.Query().Get("watch") != "" {
			return s.watchObjects(w, r, k, dir, p) // watch.go
		}
		if dir != "" && (k.name != v1.KindTenant || p.Role == auth.Operator) {
			body, ok, err := s.snapshotPage(ctx, dir, pg) // listcache.go
			if err != nil {
				return s.listError(dir, err)
			}
			if ok {
				// Sending the page is what a list costs the server now;
				// its client's share is charged as what reading the page
				// from the store cost (listcache.go), so that listers
				// keep the share of the machine they had.
				release, err := s.lists.enterFor(ctx, listHoldMax, body.cost)
				if err != nil {
					return err
				}
				body.write(w)
				release()
				return nil
			}
		}
		release, err := s.lists.enter(ctx) // listing.go
		if err != nil {
			return err
		}
		body, err := s.listBody(ctx, k, dir, p, pg)
		release()
		if err != nil {
			return err
		}
		writeRaw(w, http.StatusOK, body)
		return nil
	}
}

// listScope authorizes a list of kind in r's tenant and returns the store
// directory below base that the caller may see, the caller and the page
// asked for: base/TENANT for a named tenant, base for an operator, the
// caller's own tenant's for others when the kind is tenanted, and ""
// (none of it) otherwise.
func (s *Server) listScope(r *http.Request, kind, base string, tenanted bool) (string, auth.Principal, page, error) {
	ctx := r.Context()
	tenant, _, err := pathNames(r)
	if err != nil {
		return "", auth.Principal{}, page{}, err
	}
	p := principal(ctx)
	if err := s.authorize(ctx, auth.List, auth.Object{Kind: kind, Tenant: tenant}, ""); err != nil {
		return "", p, page{}, err
	}
	pg, err := pageOf(r)
	if err != nil {
		return "", p, page{}, err
	}
	switch {
	case tenant != "":
		// A named tenant must exist, so that a missing tenant and
		// another tenant's look the same.
		if _, err := s.storedTenant(ctx, tenant); err != nil {
			return "", p, pg, err
		}
		return base + "/" + tenant, p, pg, nil
	case p.Role == auth.Operator:
		return base, p, pg, nil
	case tenanted:
		return base + "/" + p.Tenant, p, pg, nil
	}
	return "", p, pg, nil
}

// listBody is the JSON of one page of a list of dir ("" when the
// principal may see none of it).
func (s *Server) listBody(ctx context.Context, k kind, dir string, p auth.Principal, pg page) ([]byte, error) {
	out := wire.List{Items: []wire.Item{}}
	if k.name == v1.KindTenant && p.Role != auth.Operator {
		// A tenant role's list of tenants is its own: one item, one page.
		v, err := s.store.Get(ctx, tenantKey(p.Tenant))
		if err == nil {
			out.Items = append(out.Items, wire.Item{Revision: v.Revision, Object: v.Data})
			out.Revision = v.Revision
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if dir != "" {
		page, err := s.listPage(ctx, dir, pg)
		if err != nil {
			return nil, err
		}
		out.Revision = page.Revision
		for _, v := range page.Values {
			out.Items = append(out.Items, wire.Item{Revision: v.Revision, Object: v.Data})
		}
		if page.More {
			out.Continue = nextBelow(dir, page.Values[len(page.Values)-1].Key, page.Revision)
		}
	}
	return encodeList(out), nil
}

// readBody reads a request body of at most wire.MaxBody bytes of JSON or
// YAML (or no declared type).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err != nil:
			return nil, newError(http.StatusUnsupportedMediaType, wire.CodeMediaType, "Content-Type %q is malformed; use application/json or application/yaml", truncate(ct, 64))
		case mt == "application/json", mt == "application/yaml", mt == "application/x-yaml", mt == "text/yaml", mt == "text/plain":
		default:
			return nil, newError(http.StatusUnsupportedMediaType, wire.CodeMediaType, "Content-Type %q is not supported; use application/json or application/yaml", truncate(mt, 64))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, wire.MaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, err
		}
		return nil, &httpError{Status: http.StatusBadRequest, Code: wire.CodeInvalid, Msg: "could not read the request body", Err: err}
	}
	return body, nil
}

// decodeJSON strictly decodes a small JSON request body into v.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	if dec.More() {
		return badRequest("request body: more than one JSON value")
	}
	return nil
}

// decodeObject decodes the body of a PUT: exactly one manifest of kind k
// whose names match the path.
func decodeObject(w http.ResponseWriter, r *http.Request, k kind, tenant, name string) (*v1.Set, subject, error) {
	subj := subject{kind: k.name, name: name}
	if tenant != "" {
		subj.name = tenant + "/" + name
	}
	body, err := readBody(w, r)
	if err != nil {
		return nil, subj, err
	}
	subj.lines = !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{"))
	if err := checkJSON(r, body); err != nil {
		return nil, subj, err
	}
	set, err := v1.Decode("request body", body)
	if err != nil {
		return nil, subj, manifestError(http.StatusBadRequest, err, subj)
	}
	n := len(set.Tenants) + len(set.Topologies) + len(set.Policies) + len(set.Workloads) + len(set.Volumes)
	if n != 1 {
		return nil, subj, badRequest("the body holds %d objects; send exactly one %s per request (rung apply does this for you)", n, k.name)
	}
	var meta v1.ObjectMeta
	var got string
	switch {
	case len(set.Tenants) == 1:
		got, meta = v1.KindTenant, set.Tenants[0].Metadata
	case len(set.Topologies) == 1:
		got, meta = v1.KindTopology, set.Topologies[0].Metadata
	case len(set.Policies) == 1:
		got, meta = v1.KindPolicy, set.Policies[0].Metadata
	case len(set.Volumes) == 1:
		got, meta = v1.KindVolume, set.Volumes[0].Metadata
	default:
		got, meta = v1.KindWorkload, set.Workloads[0].Metadata
	}
	switch {
	case got != k.name:
		return nil, subj, badRequest("the body is a %s but the path is for a %s; PUT it to /v1/%s/NAME", got, k.name, pluralOf(got))
	case meta.Name != name:
		return nil, subj, badRequest("metadata.name %q does not match the name %q in the path", truncate(meta.Name, 64), name)
	case meta.Tenant != tenant:
		return nil, subj, badRequest("metadata.tenant %q does not match the tenant %q in the path", truncate(meta.Tenant, 64), tenant)
	}
	return set, subj, nil
}

// checkJSON reports a JSON body (declared so, or starting like JSON) that
// is not valid JSON as a JSON error with its line and column, rather than
// as whatever the YAML parser, which reads JSON too, makes of it.
func checkJSON(r *http.Request, body []byte) error {
	trimmed := bytes.TrimSpace(body)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" && !bytes.HasPrefix(trimmed, []byte("{")) && !bytes.HasPrefix(trimmed, []byte("[")) {
		return nil
	}
	var v json.RawMessage
	err := json.Unmarshal(body, &v)
	if err == nil {
		return nil
	}
	off := int64(len(body))
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		off = se.Offset
	}
	line := 1 + bytes.Count(body[:min(off, int64(len(body)))], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(body[:min(off, int64(len(body)))], '\n'))
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "unexpected end") {
		msg = "unexpected end of JSON input"
	}
	return badRequest("request body: malformed JSON at line %d, column %d: %s (fix the JSON, or send YAML as application/yaml)", line, col, msg)
}

func pluralOf(kindName string) string {
	for _, k := range kinds {
		if k.name == kindName {
			if k.tenanted {
				return "tenants/TENANT/" + k.plural
			}
			return k.plural
		}
	}
	return "?"
}

// apply creates or updates one object. Applying what is already stored
// writes nothing and answers "unchanged" with the stored revision.
func (s *Server) apply(k kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		tenant, name, obj, err := s.authorizePath(r, auth.Apply, k.name)
		if err != nil {
			return err
		}
		set, subj, err := decodeObject(w, r, k, tenant, name)
		if err != nil {
			s.refuse(ctx, obj, name, err)
			return err
		}
		if err := s.clusterTopology(k, name); err != nil { // kubernetes.go
			s.refuse(ctx, obj, name, err)
			return err
		}
		if k.name == v1.KindWorkload {
			if strings.TrimSpace(set.Workloads[0].Spec.Image) == "" {
				// Planned, it would only make its node retry forever (DESIGN §8).
				err := newError(http.StatusUnprocessableEntity, wire.CodeInvalid,
					"Workload %s/%s: spec.image: missing: every workload runs an image (fix: name one such as busybox:latest, see `rung image pack`)", tenant, name)
				s.refuse(ctx, obj, name, err)
				return err
			}
			if err := crossTenantRefs(principal(ctx), &set.Workloads[0]); err != nil {
				s.refuse(ctx, obj, name, err)
				return err
			}
		}
		var res wire.ApplyResult
		if k.name == v1.KindWorkload {
			// A tenant's concurrent workload applies share one commit
			// (batch.go).
			var resolve func(int64) int64
			resolve, err = s.batched(ctx, obj.Tenant, func(ctx context.Context) error {
				res, err = s.applyOnce(ctx, k, tenant, name, set, subj)
				return err
			})
			if resolve != nil && res.Revision >= pendingRev {
				res.Revision = resolve(res.Revision)
			}
		} else {
			err = s.retry(ctx, obj.Tenant, func() error {
				res, err = s.applyOnce(ctx, k, tenant, name, set, subj)
				return err
			})
		}
		if err != nil {
			if retryable(err) {
				err = &httpError{Status: http.StatusConflict, Code: wire.CodeConflict,
					Msg: "the object or what it depends on kept changing; retry", Err: err}
			}
			s.refuse(ctx, obj, name, err)
			return err
		}
		status := http.StatusOK
		if res.Result == wire.Created {
			status = http.StatusCreated
		}
		writeJSON(w, status, res)
		return nil
	}
}

// retry runs a read-check-write attempt until it does not lose a race
// with a concurrent write, at most maxConflictRetries more times, with a
// growing, jittered pause. Writes about one tenant are serialized in this
// process (so one server never races itself); the store's preconditions
// still catch writers in other processes.
func (s *Server) retry(ctx context.Context, tenant string, attempt func() error) error {
	i := maphash.String(s.lockSeed, tenant) % uint64(len(s.tenantLocks))
	mu, commitMu := &s.tenantLocks[i], &s.applyQueues[i].commitMu
	mu.Lock()
	defer mu.Unlock()
	commitMu.Lock() // after the tenant's batch in flight (batch.go)
	defer commitMu.Unlock()
	return s.retryLocked(ctx, attempt)
}

// retryLocked is retry with the tenant's lock held.
func (s *Server) retryLocked(ctx context.Context, attempt func() error) error {
	pause := time.Millisecond
	for i := 0; ; i++ {
		err := attempt()
		if !retryable(err) || i == maxConflictRetries {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause/2 + rand.N(pause)):
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// retryable reports a write that lost a race with another write.
func retryable(err error) bool {
	return errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists)
}

// refuse records an apply or delete refused for a reason other than
// access control (invalid, quota, conflict) as an admission denial.
func (s *Server) refuse(ctx context.Context, o auth.Object, name string, err error) {
	he := asHTTPError(err)
	if he.Status >= 500 {
		return
	}
	s.metrics.admission.WithLabelValues(o.Kind, he.Code).Inc()
	why := he.Msg
	if len(he.Details) > 0 { // every finding of an admission rejection
		why += ": " + strings.Join(he.Details, "; ")
	}
	s.deny(ctx, principal(ctx), "apply", o, name, he.Code, why)
}

// crossTenantRefs refuses, for tenant roles, affinity rules that name
// another tenant or its workloads: placement relative to them would show
// where they run, and whether they exist.
func crossTenantRefs(p auth.Principal, w *v1.Workload) error {
	if p.Role == auth.Operator {
		return nil
	}
	for i, a := range w.Spec.Affinity {
		other := ""
		field := ""
		if t, _, ok := strings.Cut(a.Workload, "/"); ok && t != w.Metadata.Tenant {
			other, field = t, "workload"
		}
		if a.Tenant != "" && a.Tenant != w.Metadata.Tenant {
			other, field = a.Tenant, "tenant"
		}
		if other != "" {
			return newError(http.StatusForbidden, wire.CodeForbidden,
				"spec.affinity[%d].%s: a tenant role may only name its own tenant's workloads; remove the rule, or ask an operator to apply it", i, field)
		}
	}
	return nil
}

func (s *Server) applyOnce(ctx context.Context, k kind, tenant, name string, set *v1.Set, subj subject) (wire.ApplyResult, error) {
	res := wire.ApplyResult{Kind: k.name, Tenant: tenant, Name: name}
	data, err := canonical(set)
	if err != nil {
		return res, err
	}
	key := k.key(tenant, name)
	expect := store.Create
	cur, err := s.st(ctx).Get(ctx, key)
	switch {
	case err == nil:
		if bytes.Equal(cur.Data, data) {
			res.Result, res.Revision = wire.Unchanged, cur.Revision
			return res, nil
		}
		expect = cur.Revision
	case !errors.Is(err, store.ErrNotFound):
		return res, fmt.Errorf("get %s: %w", key, err)
	}
	var extra []store.Op
	var decision *policy.Decision
	switch k.name {
	case v1.KindWorkload:
		extra, decision, err = s.admitWorkload(ctx, &set.Workloads[0], set, subj)
	case v1.KindTenant:
		err = validateOwn(set, subj)
		if err == nil {
			err = checkSigningKeys(&set.Tenants[0])
		}
		if err == nil {
			extra, err = s.tenantUIDOps(ctx, name, expect == store.Create)
		}
	case v1.KindTopology, v1.KindPolicy:
		err = s.validateSite(ctx, set, k, name, subj)
	case v1.KindVolume:
		extra, err = s.admitVolume(ctx, &set.Volumes[0], set, subj, cur, expect) // volumes.go
		if err == nil {
			// admitVolume keeps the volume's uid: the stored form changes.
			if data, err = canonical(set); err == nil && expect != store.Create && bytes.Equal(cur.Data, data) {
				res.Result, res.Revision = wire.Unchanged, cur.Revision
				return res, nil
			}
		}
	}
	if err != nil {
		return res, err
	}
	res.Result = wire.Created
	if expect != store.Create {
		res.Result = wire.Updated
	}
	e := Entry{Actor: actor(principal(ctx)), ActorTenant: principal(ctx).Tenant, Action: "apply", Kind: k.name, Tenant: tenant, Name: name,
		Result: res.Result, RequestID: requestID(ctx), Admission: decision}
	ops := append([]store.Op{store.PutOp(key, data, expect)}, extra...)
	rev, err := s.commit(ctx, e, ops...)
	if err != nil {
		return res, fmt.Errorf("apply %s: %w", key, err)
	}
	res.Revision = rev
	return res, nil
}

// canonical is the stored form of the one object in set.
func canonical(set *v1.Set) ([]byte, error) {
	var obj any
	switch {
	case len(set.Tenants) == 1:
		obj = set.Tenants[0]
	case len(set.Topologies) == 1:
		obj = set.Topologies[0]
	case len(set.Policies) == 1:
		obj = set.Policies[0]
	case len(set.Volumes) == 1:
		obj = set.Volumes[0]
	default:
		obj = set.Workloads[0]
	}
	return json.Marshal(obj)
}

// validateOwn validates a set and reports the problems of the subject
// only.
func validateOwn(set *v1.Set, subj subject) error {
	err := set.Validate()
	if err == nil {
		return nil
	}
	var own []error
	for _, e := range unwrapAll(err) {
		if fe, ok := errors.AsType[*v1.FieldError](e); ok && fe.Kind == subj.kind && fe.Name == subj.name {
			own = append(own, e)
		}
	}
	if len(own) == 0 {
		return nil
	}
	return manifestError(http.StatusUnprocessableEntity, errors.Join(own...), subj)
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// stored reads every object of the given kinds into a Set, leaving out
// the object at skip. It returns the revision of each object read.
func (s *Server) stored(ctx context.Context, skip string, ks ...kind) (*v1.Set, map[string]int64, error) {
	set := &v1.Set{}
	revs := map[string]int64{}
	for _, k := range ks {
		vals, _, err := s.st(ctx).List(ctx, k.dir)
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", k.dir, err)
		}
		for _, v := range vals {
			if v.Key == skip {
				continue
			}
			if err := addObject(set, k, v.Data); err != nil {
				return nil, nil, fmt.Errorf("decode %s: %w", v.Key, err)
			}
			revs[v.Key] = v.Revision
		}
	}
	return set, revs, nil
}

func addObject(set *v1.Set, k kind, data []byte) error {
	switch k.name {
	case v1.KindTenant:
		return appendJSON(&set.Tenants, data)
	case v1.KindTopology:
		return appendJSON(&set.Topologies, data)
	case v1.KindPolicy:
		return appendJSON(&set.Policies, data)
	case v1.KindWorkload:
		return appendJSON(&set.Workloads, data)
	case v1.KindVolume:
		return appendJSON(&set.Volumes, data)
	}
	return nil
}

// appendJSON decodes data and appends it to dst.
func appendJSON[T any](dst *[]T, data []byte) error {
	var o T
	if err := json.Unmarshal(data, &o); err != nil {
		return err
	}
	*dst = append(*dst, o)
	return nil
}

// validateSite validates a Topology or Policy change (or removal, when
// change is nil) against everything stored and reports the problems it
// introduces: its own, and those of other objects it would break (a
// workload spread over a level the topology no longer has).
func (s *Server) validateSite(ctx context.Context, change *v1.Set, k kind, name string, subj subject) error {
	before, _, err := s.stored(ctx, "", kinds...)
	if err != nil {
		return err
	}
	after, _, err := s.stored(ctx, k.key("", name), kinds...)
	if err != nil {
		return err
	}
	after.Merge(change)
	known := map[string]bool{}
	for _, e := range unwrapAll(before.Validate()) {
		if e != nil {
			known[e.Error()] = true
		}
	}
	var errs []error
	for _, e := range unwrapAll(after.Validate()) {
		if e != nil && !known[e.Error()] {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		status := http.StatusUnprocessableEntity
		if change == nil {
			status = http.StatusConflict
		}
		he := manifestError(status, errors.Join(errs...), subj)
		if change == nil {
			he.Code = wire.CodeConflict
			he.Msg = fmt.Sprintf("deleting %s %q would break other objects: %s", lower(k.name), name, he.Msg)
		}
		return he
	}
	if k.name == v1.KindTopology && change != nil {
		if err := s.checkNodePortRange(change, subj); err != nil { // crossrefs.go
			return err
		}
	}
	if k.name == v1.KindPolicy && change != nil {
		if _, err := tenancy.FromPolicies(after.Policies); err != nil {
			return &httpError{Status: http.StatusUnprocessableEntity, Code: wire.CodeInvalid,
				Msg: fmt.Sprintf("policy rules do not compile: %v", err), Err: err}
		}
		if err := checkAdmission(after.Policies); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) delete(k kind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx := r.Context()
		tenant, name, obj, err := s.authorizePath(r, auth.Delete, k.name)
		if err != nil {
			return err
		}
		var rev int64
		err = s.retry(ctx, obj.Tenant, func() error {
			rev, err = s.deleteOnce(ctx, k, tenant, name)
			return err
		})
		if err != nil {
			if retryable(err) {
				err = &httpError{Status: http.StatusConflict, Code: wire.CodeConflict,
					Msg: "the object or what depends on it kept changing; retry", Err: err}
			}
			if he, ok := errors.AsType[*httpError](err); ok && he.Status == http.StatusConflict {
				s.deny(ctx, principal(ctx), "delete", obj, name, he.Code, he.Msg)
			}
			return err
		}
		if k.name == v1.KindTenant {
			s.sweepTenantTokens(ctx, name)
		}
		writeJSON(w, http.StatusOK, wire.DeleteResult{Kind: k.name, Tenant: tenant, Name: name, Revision: rev})
		return nil
	}
}

func (s *Server) deleteOnce(ctx context.Context, k kind, tenant, name string) (int64, error) {
	key := k.key(tenant, name)
	cur, err := s.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, notFound(k.name, tenant, name)
	}
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	ops := []store.Op{store.DeleteOp(key, cur.Revision)}
	switch k.name {
	case v1.KindWorkload:
		g, err := s.guardOp(ctx, tenant)
		if err != nil {
			return 0, err
		}
		ops = append(ops, g)
	case v1.KindTenant:
		more, err := s.tenantInUse(ctx, name)
		if err != nil {
			return 0, err
		}
		uid, err := s.tenantDeleteOps(ctx, name) // revokes its tokens
		if err != nil {
			return 0, err
		}
		ops = append(append(ops, more...), uid...)
	case v1.KindTopology:
		if err := s.validateSite(ctx, nil, k, name, subject{kind: k.name, name: name}); err != nil {
			return 0, err
		}
	case v1.KindVolume:
		more, err := s.volumeDeleteOps(ctx, tenant, name, cur) // volumes.go
		if err != nil {
			return 0, err
		}
		ops = append(ops, more...)
	}
	e := Entry{Actor: actor(principal(ctx)), ActorTenant: principal(ctx).Tenant, Action: "delete", Kind: k.name, Tenant: tenant, Name: name,
		Result: "deleted", RequestID: requestID(ctx)}
	rev, err := s.commit(ctx, e, ops...)
	if err != nil {
		return 0, fmt.Errorf("delete %s: %w", key, err)
	}
	return rev, nil
}

// tenantInUse refuses to delete a tenant that still has workloads or VM
// nodes, and returns the ops that make the delete fail if a workload is
// created meanwhile (its guard must not change).
func (s *Server) tenantInUse(ctx context.Context, name string) ([]store.Op, error) {
	vals, _, err := s.store.List(ctx, workloadsDir+"/"+name)
	if err != nil {
		return nil, err
	}
	if len(vals) > 0 {
		var names []string
		for _, v := range vals {
			names = append(names, v.Key[strings.LastIndexByte(v.Key, '/')+1:])
		}
		return nil, newError(http.StatusConflict, wire.CodeConflict,
			"tenant %q still has %d workload(s) (%s); delete them first", name, len(names), strings.Join(head(names, 5), ", "))
	}
	if vols, _, err := s.store.List(ctx, volumesDir+"/"+name); err != nil {
		return nil, err
	} else if len(vols) > 0 {
		return nil, newError(http.StatusConflict, wire.CodeConflict,
			"tenant %q still has %d volume(s); delete them first (deleting a volume wipes its data)", name, len(vols))
	}
	if secs, _, err := s.store.List(ctx, secretsDir+"/"+name); err != nil {
		return nil, err
	} else if len(secs) > 0 {
		return nil, newError(http.StatusConflict, wire.CodeConflict,
			"tenant %q still has %d secret(s); delete them first", name, len(secs))
	}
	topos, _, err := s.stored(ctx, "", kindTopology)
	if err != nil {
		return nil, err
	}
	for _, t := range topos.Topologies {
		for _, n := range t.Spec.Nodes {
			if n.Tenant == name {
				return nil, newError(http.StatusConflict, wire.CodeConflict,
					"tenant %q owns node %s of topology %s; remove the node's tenant field first", name, n.Name, t.Metadata.Name)
			}
		}
	}
	g, err := s.store.Get(ctx, guardsDir+"/"+name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return []store.Op{store.CheckOp(guardsDir+"/"+name, store.Create)}, nil
	case err != nil:
		return nil, err
	}
	return []store.Op{store.DeleteOp(guardsDir+"/"+name, g.Revision)}, nil
}

func head(s []string, n int) []string {
	if len(s) > n {
		return append(slices.Clone(s[:n]), "…")
	}
	return s
}

// checkSigningKeys refuses a Tenant whose images.signedBy entries are not
// PEM public keys: nodes verify signatures with them, and a key file path
// means nothing to a node (`rung apply` inlines the files).
func checkSigningKeys(t *v1.Tenant) error {
	for i, k := range t.Spec.Images.SignedBy {
		if _, err := sign.ParsePublicKey(fmt.Sprintf("signedBy[%d]", i), []byte(k)); err != nil {
			return &httpError{Status: http.StatusUnprocessableEntity, Code: wire.CodeInvalid,
				Msg: fmt.Sprintf("spec.images.signedBy[%d]: not a PEM public key (fix: `rung apply` inlines key files; through the API, send the PEM text)", i),
				Err: err}
		}
	}
	return nil
}
